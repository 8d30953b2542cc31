"""Credentials never go through a proxy in clear (issue 21, finding 2): a real forward proxy on
loopback that records what it is asked, named by the environment or set on the user's client,
in front of the fake registry on plain http://."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest
import requests

import icr_app
from icr_app import _proxies
from icr_app.testing import FakeRegistry

from loopback import RecordingProxy

VARIABLES = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    """A recording forward proxy; no proxy variable set unless the test sets one."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    with RecordingProxy() as proxy:
        yield proxy


def assert_refused(error: pytest.ExceptionInfo[icr_app.TransportError], *fixes: str) -> None:
    assert error.value.kind == "refused"
    message = str(error.value)
    assert "in clear" in message and "nothing was sent" in message
    for fix in fixes:
        assert fix in message, message


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_httpx_auth_adds_no_token_when_the_environment_names_a_proxy(
    registry: FakeRegistry,
    client: icr_app.Client,
    installation: str,
    proxy: RecordingProxy,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, proxy.base_url)
    auth = icr_app.InstallationAuth(client, installation)
    with httpx.Client(base_url=registry.base_url, auth=auth) as http:
        with pytest.raises(icr_app.TransportError) as error:
            http.get("/projects")
    assert_refused(error, "NO_PROXY=127.0.0.1", "https://")
    assert proxy.seen == []
    # The host in NO_PROXY: straight to the registry, the proxy still sees nothing.
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    with httpx.Client(base_url=registry.base_url, auth=auth) as http:
        assert http.get("/projects").status_code == 200
    assert proxy.seen == []


def test_requests_auth_adds_no_token_when_the_environment_names_a_proxy(
    registry: FakeRegistry, client: icr_app.Client, installation: str, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.base_url)
    auth = icr_app.RequestsAuth(client, installation)
    with pytest.raises(icr_app.TransportError) as error:
        requests.get(registry.base_url + "/projects", auth=auth)
    assert_refused(error, "NO_PROXY=127.0.0.1")
    assert proxy.seen == []
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert requests.get(registry.base_url + "/projects", auth=auth).status_code == 200
    assert proxy.seen == []


def test_httpx_auth_refuses_the_clients_own_proxy(
    registry: FakeRegistry, client: icr_app.Client, installation: str, proxy: RecordingProxy
) -> None:
    auth = icr_app.InstallationAuth(client, installation)
    with httpx.Client(base_url=registry.base_url, auth=auth, proxy=proxy.base_url) as http:
        with pytest.raises(icr_app.TransportError) as error:
            http.get("/projects")
    assert_refused(error, "no proxy")
    assert proxy.seen == []
    # A request without a token may still use it.
    with httpx.Client(proxy=proxy.base_url) as http:
        assert http.get(registry.base_url + "/projects").status_code == 401
    assert [s.authorization for s in proxy.seen] == [None]


async def test_async_httpx_auth_refuses_the_clients_own_proxy(
    registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str, proxy: RecordingProxy
) -> None:
    seen: list[str] = []

    async def their_trace(event: str, info: dict[str, object]) -> None:
        seen.append(event)

    auth = icr_app.InstallationAuth(aclient, installation)
    async with httpx.AsyncClient(base_url=registry.base_url, auth=auth, proxy=proxy.base_url) as http:
        with pytest.raises(icr_app.TransportError) as error:
            await http.get("/projects", extensions={"trace": their_trace})
    assert_refused(error)
    assert proxy.seen == []
    assert "http11.send_request_headers.started" in seen, "the client's own trace still runs"


def test_requests_never_sends_a_second_token_through_a_proxy_given_in_code(
    registry: FakeRegistry,
    client: icr_app.Client,
    installation: str,
    proxy: RecordingProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the auth cannot see before sending (a proxy given to requests in code) reaches the
    proxy once; after a 401 the second token does not follow it."""
    client.installation_token(installation)
    registry.revoke_all_tokens()
    with requests.Session() as session:
        session.proxies = {"http": proxy.base_url}
        response = session.get(registry.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation))
    assert response.status_code == 401
    assert len(proxy.seen) == 1
    assert any("through a proxy in clear" in r.getMessage() for r in caplog.records if r.name == "icr_app")


def test_the_clients_own_httpx_client_never_proxies_loopback(
    registry: FakeRegistry, app: icr_app.App, installation: str, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "ALL_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy.base_url)
    with icr_app.Client(app) as client:
        assert registry.token_is_valid(client.installation_token(installation))
        assert client.request(installation, "GET", "/projects").status_code == 200
    assert proxy.seen == []


async def test_the_async_clients_own_httpx_client_never_proxies_loopback(
    registry: FakeRegistry, app: icr_app.App, installation: str, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.base_url)
    async with icr_app.AsyncClient(app) as client:
        assert registry.token_is_valid(await client.installation_token(installation))
    assert proxy.seen == []


def test_a_handed_in_client_with_a_proxy_gets_no_credential_for_loopback(
    registry: FakeRegistry, app: icr_app.App, installation: str, proxy: RecordingProxy
) -> None:
    with httpx.Client(proxy=proxy.base_url) as http, icr_app.Client(app, http_client=http) as client:
        with pytest.raises(icr_app.TransportError) as error:
            client.installation_token(installation)
    assert error.value.kind == "refused"
    assert "through a proxy" in str(error.value)
    assert proxy.seen == []
    assert registry.mint_count(installation) == 0


async def test_a_handed_in_async_client_with_a_proxy_gets_no_credential_for_loopback(
    registry: FakeRegistry, app: icr_app.App, installation: str, proxy: RecordingProxy
) -> None:
    async with httpx.AsyncClient(proxy=proxy.base_url) as http:
        client = icr_app.AsyncClient(app, http_client=http)
        with pytest.raises(icr_app.TransportError) as error:
            await client.installation_token(installation)
    assert error.value.kind == "refused"
    assert proxy.seen == []


@pytest.mark.parametrize(
    ("no_proxy", "host", "proxied"),
    [
        ("", "127.0.0.1", True),
        ("*", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", False),
        ("localhost, 127.0.0.1", "127.0.0.1", False),
        ("LOCALHOST", "localhost", False),
        ("::1", "::1", False),
        ("127.0.0.1:8080", "127.0.0.1", True),  # requests ignores the port form: not counted
        ("127.0.0.0/8", "127.0.0.1", True),  # httpx reads no CIDR range: not counted
        ("http://127.0.0.1", "127.0.0.1", True),
        ("example.com", "registry.example.com", False),
        (".example.com", "registry.example.com", False),
        (".example.com", "example.com", True),  # httpx: subdomains only
        ("example.com", "badexample.com", True),
        ("0.0.1", "127.0.0.1", True),  # never a suffix of an address
    ],
)
def test_no_proxy_is_read_conservatively(
    monkeypatch: pytest.MonkeyPatch, proxy: RecordingProxy, no_proxy: str, host: str, proxied: bool
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert _proxies.environment_may_proxy(host) is proxied


def test_no_proxy_variable_means_no_proxy(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _proxies.environment_may_proxy("127.0.0.1") is False
    # An https proxy is for https:// requests: it never sees a plain http:// one.
    monkeypatch.setenv("HTTPS_PROXY", proxy.base_url)
    assert _proxies.environment_may_proxy("127.0.0.1") is False
