"""Acting for an organization (``ByOrganization``, ``installation_for_organization``), against the
fake registry over loopback HTTP: the lookup, one token whichever way it is asked for, one lookup
and one mint for many threads or tasks, a reinstall followed (by every way of calling), and the
value itself. The shared store's side is in ``test_shared_store.py``."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
from typing import Any, Awaitable, Callable, Union

import httpx
import pytest
import requests

import icr_app
from icr_app import ByOrganization
from icr_app.testing import FakeRegistry

LOOKUPS = "/app/organizations/"
MINTS = "/app/installations/"


def test_by_organization_is_a_small_immutable_value() -> None:
    by = ByOrganization("org-1")
    assert by.organization_id == "org-1"
    assert repr(by) == "ByOrganization('org-1')"
    assert repr(ByOrganization("it's")) == 'ByOrganization("it\'s")'
    assert by == ByOrganization("org-1") and hash(by) == hash(ByOrganization("org-1"))
    assert by != ByOrganization("org-2")
    assert by != "org-1" and "org-1" != by  # never an installation id
    assert {by: 1}[ByOrganization("org-1")] == 1
    assert len({by, ByOrganization("org-1"), "org-1"}) == 2
    assert copy.copy(by) == by and copy.deepcopy(by) == by
    assert pickle.loads(pickle.dumps(by)) == by
    with pytest.raises(AttributeError):
        by.organization_id = "org-2"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        by.other = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("wrong", [42, None, b"org-1", ["org-1"]])
def test_by_organization_takes_a_str(wrong: Any) -> None:
    with pytest.raises(TypeError, match="ByOrganization takes the organization's id as a str, not "):
        ByOrganization(wrong)


@pytest.mark.parametrize("bad", ["", "..", "two words", "a\nb", "x" * 300])
def test_by_organization_checks_the_id(bad: str) -> None:
    with pytest.raises(icr_app.ConfigError, match="organization id"):
        ByOrganization(bad)


def test_a_wrong_type_where_an_installation_goes_is_a_type_error(
    app: icr_app.App, client: icr_app.Client, registry: FakeRegistry
) -> None:
    expected = r"installation_id must be an installation id \(str\), an icr_app.ByOrganization, or None \(the app\), not "
    wrongs: list[Any] = [42, b"id", ["id"], object()]
    for wrong in wrongs:
        with pytest.raises(TypeError, match=expected + type(wrong).__name__):
            client.installation_token(wrong)
        with pytest.raises(TypeError, match=expected):
            client.get_json(wrong, "/projects")
        with pytest.raises(TypeError, match=expected):
            client.request(wrong, "GET", "/projects")
        with pytest.raises(TypeError, match=expected):
            icr_app.GetToken(app, wrong)
        with pytest.raises(TypeError, match=expected):
            icr_app.SendAs(app, wrong, "GET", "/projects")
        with pytest.raises(TypeError, match=expected):
            app.invalidate(wrong, "crs_x")
        with pytest.raises(TypeError, match="InstallationAuth: " + expected):
            icr_app.InstallationAuth(client, wrong)
        with pytest.raises(TypeError, match="RequestsAuth: " + expected):
            icr_app.RequestsAuth(client, wrong)
        with pytest.raises(TypeError, match=r"an installation id \(str\) or an icr_app.ByOrganization, not "):
            client.installation(wrong)
    with pytest.raises(TypeError, match="ByOrganization takes"):
        client.installation_for_organization(42)  # type: ignore[arg-type]
    assert registry.requests() == []


def test_installation_for_organization(registry: FakeRegistry, client: icr_app.Client) -> None:
    org, installation = registry.organization_ids[1], registry.installation_ids[1]
    found = client.installation_for_organization(org)
    assert isinstance(found, icr_app.Installation)
    assert found.id == installation
    assert found.organization is not None and found.organization.id == org
    assert found.organization.name == "Andes Reforestation Cooperative"
    assert found.permissions == {"organization_info": "VIEW"}
    assert client.installation(ByOrganization(org)).id == installation  # the same lookup
    assert registry.lookup_count(org) == 2
    assert [r["path"] for r in registry.requests()] == [f"/app/organizations/{org}/installation"] * 2
    # Remembered: a token by organization needs no lookup.
    token = client.installation_token(ByOrganization(org))
    assert token.installation_id == installation and token.organization_id == org
    assert registry.lookup_count(org) == 2 and registry.mint_count(installation) == 1
    assert client.stats().lookups == 2


def test_an_organization_without_the_app(registry: FakeRegistry, client: icr_app.Client) -> None:
    assert registry.app_id is not None
    with pytest.raises(icr_app.NotFoundError) as error:
        client.installation_for_organization("no-such-organization")
    assert error.value.status == 404
    assert error.value.organization_id == "no-such-organization"
    assert "the app is not installed on organization no-such-organization" in str(error.value)
    assert "server said: Not Found: App is not installed on organization" in str(error.value)
    # The same by every way of acting as it; and nothing is minted.
    for act in (
        lambda: client.installation_token(ByOrganization("no-such-organization")),
        lambda: client.get_json(ByOrganization("no-such-organization"), "/projects"),
        lambda: client.request(ByOrganization("no-such-organization"), "GET", "/projects"),
    ):
        with pytest.raises(icr_app.NotFoundError, match="not installed on organization no-such-organization") as e:
            act()
        assert e.value.organization_id == "no-such-organization"
    # Another 404 is not about an organization.
    with pytest.raises(icr_app.NotFoundError) as other:
        client.installation("no-such-installation")
    assert other.value.organization_id is None
    # An organization the app was uninstalled from.
    registry.remove_installation(registry.installation_ids[2])
    with pytest.raises(icr_app.NotFoundError, match="not installed on organization"):
        client.installation_token(ByOrganization(registry.organization_ids[2]))
    assert sum(registry.mint_count(i) for i in registry.installation_ids) == 0


async def test_an_organization_without_the_app_async(registry: FakeRegistry, aclient: icr_app.AsyncClient) -> None:
    with pytest.raises(icr_app.NotFoundError, match="not installed on organization nobody") as error:
        await aclient.installation_for_organization("nobody")
    assert error.value.organization_id == "nobody"
    with pytest.raises(icr_app.NotFoundError, match="not installed on organization nobody"):
        await aclient.installation_token(ByOrganization("nobody"))


def test_the_token_by_organization_is_the_installations(registry: FakeRegistry, client: icr_app.Client) -> None:
    org, installation = registry.organization_ids[0], registry.installation_ids[0]
    by_org = client.installation_token(ByOrganization(org))
    assert client.installation_token(installation) == by_org
    assert client.installation_token(ByOrganization(org)) is client.installation_token(ByOrganization(org))
    assert registry.mint_count(installation) == 1 and registry.lookup_count(org) == 1
    # The other way round on another App: the installation's token, then the organization's.
    assert registry.app_id is not None and registry.private_key_pem is not None
    other = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)
    with icr_app.Client(other) as second:
        by_id = second.installation_token(installation)
        assert second.installation_token(ByOrganization(org)) == by_id
    assert registry.mint_count(installation) == 2 and registry.lookup_count(org) == 2
    # The second ask looked the organization up (a miss), then found the installation's token.
    assert (other.stats().mints, other.stats().lookups, other.stats().misses) == (1, 1, 2)


def test_each_organization_gets_its_own_token(registry: FakeRegistry, client: icr_app.Client) -> None:
    """The hit path keeps the last token handed out with its object: asked for an equal
    ``ByOrganization`` it is handed back; another organization, or the installation id of
    another, never gets it."""
    orgs, installations = registry.organization_ids, registry.installation_ids
    for _ in range(2):
        for org, installation in zip(orgs, installations):
            first = client.installation_token(ByOrganization(org))
            assert first.installation_id == installation
            kept = client.installation_token(ByOrganization(org))
            assert kept == first
            assert client.installation_token(ByOrganization(org)) is kept  # an equal value, another object
            assert client.installation_token(ByOrganization(orgs[0])).installation_id == installations[0]
            assert client.installation_token(installations[1]).installation_id == installations[1]
    assert [registry.lookup_count(o) for o in orgs] == [1, 1, 1]
    assert [registry.mint_count(i) for i in installations] == [1, 1, 1]


def test_100_threads_cold_organization_one_lookup_one_mint(registry: FakeRegistry, client: icr_app.Client) -> None:
    org, installation = registry.organization_ids[0], registry.installation_ids[0]
    registry.inject_delay(0.3, path_prefix=LOOKUPS)  # the lookup stays in flight
    registry.inject_delay(0.2, path_prefix=MINTS)  # then the mint
    barrier = threading.Barrier(100)
    tokens: list[icr_app.Token] = []
    errors: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            tokens.append(client.installation_token(ByOrganization(org)))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(tokens) == 100 and len({t.token for t in tokens}) == 1
    assert tokens[0].installation_id == installation
    assert registry.lookup_count(org) == 1
    assert registry.mint_count(installation) == 1
    stats = client.stats()
    assert (stats.lookups, stats.mints, stats.misses) == (1, 1, 100)


async def test_100_tasks_cold_organization_one_lookup_one_mint(
    registry: FakeRegistry, aclient: icr_app.AsyncClient
) -> None:
    org, installation = registry.organization_ids[0], registry.installation_ids[0]
    registry.inject_delay(0.3, path_prefix=LOOKUPS)
    registry.inject_delay(0.2, path_prefix=MINTS)
    tokens = await asyncio.gather(*(aclient.installation_token(ByOrganization(org)) for _ in range(100)))
    assert len({t.token for t in tokens}) == 1 and tokens[0].installation_id == installation
    assert registry.lookup_count(org) == 1
    assert registry.mint_count(installation) == 1
    assert (aclient.stats().lookups, aclient.stats().mints) == (1, 1)


def _httpx_auth(client: icr_app.Client, who: ByOrganization) -> int:
    with httpx.Client(base_url=client.app.base_url, auth=icr_app.InstallationAuth(client, who)) as http:
        response = http.get("/projects")
    return response.status_code


def _requests_auth(client: icr_app.Client, who: ByOrganization) -> int:
    return requests.get(client.app.base_url + "/projects", auth=icr_app.RequestsAuth(client, who)).status_code


#: Every way of calling the API as an organization with the blocking client: each returns the
#: status of the registry's answer (200 when it succeeded).
SYNC_WAYS: dict[str, Callable[[icr_app.Client, ByOrganization], int]] = {
    "get_json": lambda client, who: 200 if "projects" in client.get_json(who, "/projects?limit=1&page=0") else 0,
    "request": lambda client, who: client.request(who, "GET", "/projects").status_code,
    "InstallationAuth": _httpx_auth,
    "RequestsAuth": _requests_auth,
}


@pytest.mark.parametrize("way", SYNC_WAYS, ids=list(SYNC_WAYS))
def test_a_reinstall_is_followed(registry: FakeRegistry, client: icr_app.Client, way: str) -> None:
    call = SYNC_WAYS[way]
    org, old = registry.organization_ids[0], registry.installation_ids[0]
    who = ByOrganization(org)
    assert call(client, who) == 200
    assert (registry.lookup_count(org), registry.mint_count(old)) == (1, 1)
    new = registry.reinstall(org)
    assert new != old
    # The old token is refused (401), its installation's mint answers 404: the organization is
    # looked up once more and the call succeeds as the new installation.
    assert call(client, who) == 200
    assert registry.lookup_count(org) == 2
    assert (registry.mint_count(old), registry.mint_count(new)) == (1, 1)
    statuses = [(r["path"].split("?")[0], r["status"]) for r in registry.requests()]
    assert statuses[-5:] == [
        ("/projects", 401),
        (f"/app/installations/{old}/accessTokens", 404),
        (f"/app/organizations/{org}/installation", 200),
        (f"/app/installations/{new}/accessTokens", 200),
        ("/projects", 200),
    ]
    token = client.installation_token(who)
    assert token.installation_id == new and registry.token_status(token) == "valid"
    assert dict(registry.requests()[-1]["headers"])["authorization"] == f"Bearer {token.token}"
    # And it stays found: no more lookups or mints.
    assert call(client, who) == 200
    assert registry.lookup_count(org) == 2 and registry.mint_count(new) == 1
    assert client.stats().lookups == 2


async def _async_get_json(client: icr_app.AsyncClient, who: ByOrganization) -> int:
    return 200 if "projects" in await client.get_json(who, "/projects?limit=1&page=0") else 0


async def _async_request(client: icr_app.AsyncClient, who: ByOrganization) -> int:
    return (await client.request(who, "GET", "/projects")).status_code


async def _async_httpx_auth(client: icr_app.AsyncClient, who: ByOrganization) -> int:
    auth = icr_app.InstallationAuth(client, who)
    async with httpx.AsyncClient(base_url=client.app.base_url, auth=auth) as http:
        return (await http.get("/projects")).status_code


ASYNC_WAYS: dict[str, Callable[[icr_app.AsyncClient, ByOrganization], Awaitable[int]]] = {
    "get_json": _async_get_json,
    "request": _async_request,
    "InstallationAuth": _async_httpx_auth,
}


@pytest.mark.parametrize("way", ASYNC_WAYS, ids=list(ASYNC_WAYS))
async def test_a_reinstall_is_followed_async(registry: FakeRegistry, aclient: icr_app.AsyncClient, way: str) -> None:
    call = ASYNC_WAYS[way]
    org, old = registry.organization_ids[0], registry.installation_ids[0]
    who = ByOrganization(org)
    assert await call(aclient, who) == 200
    new = registry.reinstall(org)
    assert await call(aclient, who) == 200
    assert registry.lookup_count(org) == 2
    assert (registry.mint_count(old), registry.mint_count(new)) == (1, 1)
    assert (await aclient.installation_token(who)).installation_id == new
    assert await call(aclient, who) == 200
    assert registry.lookup_count(org) == 2 and registry.mint_count(new) == 1


def test_a_reinstall_under_many_threads_one_lookup_one_mint(registry: FakeRegistry, client: icr_app.Client) -> None:
    org, old = registry.organization_ids[0], registry.installation_ids[0]
    who = ByOrganization(org)
    client.get_json(who, "/projects")
    new = registry.reinstall(org)
    registry.inject_delay(0.2, path_prefix=LOOKUPS)
    barrier = threading.Barrier(20)
    results: list[Union[int, BaseException]] = []

    def call() -> None:
        barrier.wait()
        try:
            results.append(client.request(who, "GET", "/projects").status_code)
        except BaseException as e:  # pragma: no cover - reported below
            results.append(e)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 20
    assert registry.lookup_count(org) == 2
    assert (registry.mint_count(old), registry.mint_count(new)) == (1, 1)


def test_a_token_refused_elsewhere_is_dropped_by_organization(registry: FakeRegistry, client: icr_app.Client) -> None:
    """A token handed out keeps being served until something says it is refused: a request of
    the client's own, or ``App.invalidate`` by whoever saw the 401. Then the next token follows
    the reinstall."""
    org = registry.organization_ids[0]
    who = ByOrganization(org)
    token = client.installation_token(who)
    new = registry.reinstall(org)
    assert registry.token_status(token) == "revoked"
    assert client.installation_token(who) == token  # nothing told the client yet
    assert client.app.invalidate(who, token)
    assert not client.app.invalidate(who, token)
    fresh = client.installation_token(who)
    assert fresh.installation_id == new and registry.token_is_valid(fresh)
    assert registry.lookup_count(org) == 2 and registry.mint_count(new) == 1


def test_an_organization_uninstalled_for_good(registry: FakeRegistry, client: icr_app.Client) -> None:
    org, installation = registry.organization_ids[0], registry.installation_ids[0]
    who = ByOrganization(org)
    client.get_json(who, "/projects")
    registry.remove_installation(installation)
    registry.revoke_all_tokens()
    with pytest.raises(icr_app.NotFoundError, match=f"not installed on organization {org}"):
        client.get_json(who, "/projects")
    assert registry.lookup_count(org) == 2


def test_operations_by_hand(registry: FakeRegistry, app: icr_app.App) -> None:
    """For a driver of another runtime nothing changes: the lookup is one more ``Send``."""
    org, installation = registry.organization_ids[2], registry.installation_ids[2]
    op = icr_app.GetToken(app, ByOrganization(org))
    paths = []
    with httpx.Client() as http:
        while True:
            step = op.poll()
            if isinstance(step, icr_app.Done):
                token = step.value
                break
            assert isinstance(step, icr_app.Send)
            paths.append((step.method, httpx.URL(step.url).path))
            response = http.request(step.method, step.url, headers=step.headers, content=step.body or None)
            op.handle_response(step.id, response.status_code, response.headers.raw, response.content)
    assert paths == [
        ("GET", f"/app/organizations/{org}/installation"),
        ("POST", f"/app/installations/{installation}/accessTokens"),
    ]
    assert isinstance(token, icr_app.Token) and token.installation_id == installation
    send = icr_app.SendAs(app, ByOrganization(org), "GET", "/projects").poll()
    assert isinstance(send, icr_app.Send) and send.target
    assert send.authorization == f"Bearer {token.token}"


def test_fake_registry_organizations(registry: FakeRegistry) -> None:
    assert registry.app_id is not None
    assert len(registry.organization_ids) == 3
    assert registry.organization_ids == [registry.organization_id(i) for i in registry.installation_ids]
    org, old = registry.organization_ids[0], registry.installation_ids[0]
    assert registry.lookup_count(org) == 0
    new = registry.reinstall(org)
    assert registry.organization_id(new) == org and registry.organization_id(old) is None
    assert registry.installation_ids[0] == old  # as demo() made them
    newer = registry.reinstall(org)  # again: the current installation is reinstalled
    assert newer not in (old, new) and registry.organization_id(newer) == org
    with pytest.raises(ValueError, match="is an installation id: reinstall takes the organization's id"):
        registry.reinstall(registry.installation_ids[1])
    with pytest.raises(ValueError, match="no installation made by this FakeRegistry"):
        registry.reinstall("no-such-organization")
    # One added later is known too.
    added = registry.add_installation(registry.app_id, "Acme")
    added_org = registry.organization_id(added)
    assert added_org is not None
    assert registry.organization_id(registry.reinstall(added_org)) == added_org
    with FakeRegistry() as empty:
        assert empty.organization_ids == [] and empty.installation_ids == []
