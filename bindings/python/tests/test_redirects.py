"""The user's own client following the registry's redirects (issue 21, findings 1 and 3): the
auth acts once, for the request it authorised; another host never gets a token, never teaches
the clock and never has a token dropped or minted; an operation polled after it finished never
sends again."""

from __future__ import annotations

import httpx
import pytest
import requests

import icr_app
from icr_app.testing import FakeRegistry

from loopback import OtherHost

TWENTY_FIVE_DAYS = 25 * 24 * 3600


def test_requests_cross_host_redirect_sends_no_token_and_only_once(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    with OtherHost(200) as other:
        registry.inject_redirect(other.base_url + "/stolen", status=302, path_prefix="/projects")
        response = requests.get(registry.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation))
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [302]
        assert [s.target for s in other.seen] == ["/stolen"], other.seen
        assert other.seen[0].authorization is None
    assert registry.mint_count(installation) == 1


def test_requests_401_on_another_host_mints_nothing(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    token = client.installation_token(installation)
    with OtherHost(401, date_offset=TWENTY_FIVE_DAYS) as other:
        registry.inject_redirect(other.base_url + "/stolen", status=302, path_prefix="/projects")
        response = requests.get(registry.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation))
        assert response.status_code == 401
        assert len(other.seen) == 1 and other.seen[0].authorization is None, other.seen
    assert registry.mint_count(installation) == 1
    assert client.installation_token(installation) == token
    assert abs(client.app.clock_offset) < 60


def test_requests_same_host_redirect_sends_each_hop_once(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    registry.inject_redirect(registry.base_url + "/projects?limit=1&page=0", status=302, path_prefix="/projects")
    response = requests.get(registry.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation))
    assert response.status_code == 200
    hops = [r["path"] for r in registry.requests() if r["path"].startswith("/projects")]
    assert hops == ["/projects", "/projects?limit=1&page=0"], hops
    assert registry.mint_count(installation) == 1


def test_httpx_redirect_to_another_host_neither_teaches_the_clock_nor_drops_the_token(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    token = client.installation_token(installation)
    with OtherHost(401, date_offset=TWENTY_FIVE_DAYS) as other:
        registry.inject_redirect(other.base_url + "/elsewhere", status=302, path_prefix="/projects")
        auth = icr_app.InstallationAuth(client, installation)
        with httpx.Client(base_url=registry.base_url, auth=auth, follow_redirects=True) as http:
            response = http.get("/projects")
        assert response.status_code == 401
        assert [s.target for s in other.seen] == ["/elsewhere"], other.seen
        assert other.seen[0].authorization is None
    assert abs(client.app.clock_offset) < 60, client.app.clock_offset
    assert client.installation_token(installation) == token
    assert registry.mint_count(installation) == 1
    assert registry.token_is_valid(token)


async def test_httpx_async_redirect_to_another_host_is_not_the_registry(
    registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str
) -> None:
    token = await aclient.installation_token(installation)
    with OtherHost(401, date_offset=-TWENTY_FIVE_DAYS) as other:
        registry.inject_redirect(other.base_url + "/elsewhere", status=307, path_prefix="/projects")
        auth = icr_app.InstallationAuth(aclient, installation)
        async with httpx.AsyncClient(base_url=registry.base_url, auth=auth, follow_redirects=True) as http:
            response = await http.get("/projects")
        assert response.status_code == 401
        assert len(other.seen) == 1 and other.seen[0].authorization is None
    assert abs(aclient.app.clock_offset) < 60
    assert await aclient.installation_token(installation) == token
    assert registry.mint_count(installation) == 1


def test_httpx_same_host_redirect_is_the_registry(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    registry.inject_redirect(registry.base_url + "/projects?limit=1&page=0", status=302, path_prefix="/projects")
    auth = icr_app.InstallationAuth(client, installation)
    with httpx.Client(base_url=registry.base_url, auth=auth, follow_redirects=True) as http:
        response = http.get("/projects")
    assert response.status_code == 200
    assert len(response.json()["projects"]) == 1
    hops = [r["path"] for r in registry.requests() if r["path"].startswith("/projects")]
    assert hops == ["/projects", "/projects?limit=1&page=0"], hops


def test_an_operation_polled_after_it_finished_never_sends_again(
    registry: FakeRegistry, app: icr_app.App, client: icr_app.Client, installation: str
) -> None:
    op = icr_app.SendAs(app, installation, "GET", "/projects")
    status, _, _ = client._driver.run(op)
    assert status == 200 and op.done
    sent = len(registry.requests())
    with pytest.raises(icr_app.Error, match="finished"):
        op.poll()
    # Reports after the end change nothing either.
    op.handle_response(1, 401, [], b"")
    op.handle_failure(1, "timeout", "late")
    assert len(registry.requests()) == sent
    assert registry.mint_count(installation) == 1
    assert client.installation_token(installation) is not None
    assert registry.mint_count(installation) == 1
    # Abandoned is finished too.
    other = icr_app.GetToken(app, registry.installation_ids[1])
    other.abandon()
    with pytest.raises(icr_app.Error, match="finished"):
        other.poll()
    assert registry.mint_count(registry.installation_ids[1]) == 0
