"""Every method of the AsyncClient, against the fake registry over loopback HTTP."""

from __future__ import annotations

import httpx
import pytest

import icr_app
from icr_app.testing import FakeRegistry


async def test_tokens(registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str) -> None:
    token = await aclient.installation_token(installation)
    assert registry.token_is_valid(token)
    assert await aclient.installation_token(installation, min_life=600) == token
    assert registry.mint_count(installation) == 1
    app_token = await aclient.app_token()
    assert app_token.installation_id is None
    assert aclient.jwt().count(".") == 2
    with pytest.raises(icr_app.ConfigError):
        await aclient.installation_token(installation, min_life=10 * 3600)


async def test_installations(registry: FakeRegistry, aclient: icr_app.AsyncClient) -> None:
    found = await aclient.installations()
    assert [i.id for i in found] == registry.installation_ids
    one = await aclient.installation(registry.installation_ids[1])
    assert one.organization is not None and one.organization.name == "Andes Reforestation Cooperative"
    with pytest.raises(icr_app.NotFoundError):
        await aclient.installation("missing")


async def test_get_json_and_request(registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str) -> None:
    assert len((await aclient.get_json(installation, "/projects?limit=3&page=0"))["projects"]) == 3
    response = await aclient.request(installation, "GET", "/projects?limit=1&page=0")
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert (await aclient.request(installation, "GET", "/nope")).status_code == 404
    other = registry.installation_ids[1]
    with pytest.raises(icr_app.AuthError) as error:
        await aclient.get_json(other, f"/organizations/{registry.organization_id(other)}/inventory")
    assert error.value.status == 403


async def test_revoke_all(registry: FakeRegistry, aclient: icr_app.AsyncClient) -> None:
    tokens = [await aclient.installation_token(i) for i in registry.installation_ids]
    await aclient.revoke(tokens[0])
    assert registry.token_status(tokens[0]) == "revoked"
    assert await aclient.revoke_all() == 2
    assert all(registry.token_status(t) == "revoked" for t in tokens)


async def test_user_async_client(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    async with httpx.AsyncClient() as http:
        async with icr_app.AsyncClient(app, http_client=http) as client:
            await client.installation_token(installation)
        assert not http.is_closed
    assert registry.mint_count(installation) == 1


async def test_sync_and_async_clients_share_one_app(
    registry: FakeRegistry, app: icr_app.App, installation: str
) -> None:
    async with icr_app.AsyncClient(app) as aclient:
        token = await aclient.installation_token(installation)
    with icr_app.Client(app) as client:
        assert client.installation_token(installation) == token
    assert registry.mint_count(installation) == 1
