"""InstallationAuth (httpx, sync and async) and RequestsAuth: the user's own HTTP client,
authorised as an installation; revocation and the 401 -> mint-again path."""

from __future__ import annotations

import httpx
import pytest
import requests

import icr_app
from icr_app.testing import FakeRegistry


def test_httpx_sync(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    auth = icr_app.InstallationAuth(client, installation)
    with httpx.Client(base_url=registry.base_url, auth=auth) as http:
        response = http.get("/projects", params={"limit": 1, "page": 0})
        assert response.status_code == 200
        assert len(response.json()["projects"]) == 1
        sent = dict(registry.requests()[-1]["headers"])
        assert sent["authorization"] == f"Bearer {client.installation_token(installation).token}"
        assert sent["x-icr-api-version"] == "2023-06-16"
        http.get("/projects")
    assert registry.mint_count(installation) == 1


def test_httpx_sync_401_mints_again_once(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    auth = icr_app.InstallationAuth(client, installation)
    with httpx.Client(base_url=registry.base_url, auth=auth) as http:
        assert http.get("/projects").status_code == 200
        registry.revoke_all_tokens()
        response = http.get("/projects")
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert registry.mint_count(installation) == 2
        # A registry that refuses every token: one retry, then the 401 comes back.
        registry.inject_status(401, times=2, path_prefix="/projects")
        refused = http.get("/projects")
        assert refused.status_code == 401
        assert registry.mint_count(installation) == 3


async def test_httpx_async_401_mints_again_once(
    registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str
) -> None:
    auth = icr_app.InstallationAuth(aclient, installation)
    async with httpx.AsyncClient(base_url=registry.base_url, auth=auth) as http:
        assert (await http.get("/projects")).status_code == 200
        registry.revoke_all_tokens()
        response = await http.get("/projects")
        assert response.status_code == 200
        assert len(response.history) == 1
    assert registry.mint_count(installation) == 2


def test_an_expired_token_is_replaced(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    token = client.installation_token(installation)
    registry.expire_token(token)
    with httpx.Client(base_url=registry.base_url, auth=icr_app.InstallationAuth(client, installation)) as http:
        assert http.get("/projects").status_code == 200
    assert client.installation_token(installation) != token


def test_tokens_go_to_no_other_host(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    seen: list[httpx.Request] = []

    def elsewhere(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(elsewhere), auth=icr_app.InstallationAuth(client, installation)) as http:
        with pytest.raises(icr_app.ConfigError, match="not the configured registry"):
            http.get("https://attacker.example/collect")
    assert seen == []
    assert registry.mint_count(installation) == 0


def test_wrong_client_kind(client: icr_app.Client, app: icr_app.App, installation: str) -> None:
    with pytest.raises(TypeError):
        icr_app.InstallationAuth(object(), installation)  # type: ignore[arg-type]
    auth = icr_app.InstallationAuth(icr_app.AsyncClient(app), installation)
    with httpx.Client(auth=auth) as http, pytest.raises(TypeError, match="needs an icr_app.Client"):
        http.get(app.base_url + "/projects")


def test_requests(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    auth = icr_app.RequestsAuth(client, installation)
    with requests.Session() as session:
        response = session.get(registry.base_url + "/projects", auth=auth)
        assert response.status_code == 200
        registry.revoke_all_tokens()
        again = session.get(registry.base_url + "/projects", auth=auth)
        assert again.status_code == 200
        assert [r.status_code for r in again.history] == [401]
    assert registry.mint_count(installation) == 2
    assert requests.get(registry.base_url + "/projects", auth=auth).status_code == 200


def test_requests_refuses_other_hosts(client: icr_app.Client, installation: str) -> None:
    with pytest.raises(icr_app.ConfigError):
        requests.get("https://attacker.example/", auth=icr_app.RequestsAuth(client, installation))
