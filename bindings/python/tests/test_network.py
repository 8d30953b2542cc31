"""Proxies and private CAs (issue 27) with real servers on loopback: the fake registry behind
TLS whose certificate comes from a CA made in the test, for ``registry.test``, a name only the
proxy resolves; a real ``CONNECT`` proxy that logs each request line and keeps the bytes it
tunnels. The package's own httpx clients mint and send through it: ``App(proxy=...,
ca_file=...)``, the environment's ``HTTPS_PROXY`` and ``SSL_CERT_FILE``, ``NO_PROXY``,
credentials right and wrong, the http-behind-proxy refusal, loopback bypassing a proxy."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import icr_app
from icr_app.testing import ConnectProxy, FakeRegistry, TlsFront

BASE_URL = "https://registry.test"
VARIABLES = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
]


class Net:
    def __init__(self, registry: FakeRegistry, front: TlsFront, proxy: ConnectProxy, ca_file: Path) -> None:
        self.registry = registry
        self.front = front
        self.proxy = proxy
        self.ca_file = ca_file

    def app(self, **options: object) -> icr_app.App:
        assert self.registry.app_id is not None and self.registry.private_key_pem is not None
        return icr_app.App(self.registry.app_id, self.registry.private_key_pem, BASE_URL, **options)  # type: ignore[arg-type]

    @property
    def installation(self) -> str:
        return self.registry.installation_ids[0]

    def assert_only_tunnels(self, *secrets: str) -> None:
        lines = self.proxy.request_lines()
        assert lines, "the proxy saw nothing"
        assert all(line == "CONNECT registry.test:443 HTTP/1.1" for line in lines), lines
        for tunnel in self.proxy.tunneled():
            assert tunnel[:1] == b"\x16", "a tunnel that does not start with a TLS handshake"
            text = tunnel.lower()
            assert b"authorization" not in text and b"/app/" not in text
            for secret in secrets:
                assert secret.lower().encode() not in text


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def make_net(registry: FakeRegistry, tmp_path: Path, **proxy: object) -> Iterator[Net]:
    with TlsFront(registry) as front:
        with ConnectProxy(resolve={"registry.test": front.port}, **proxy) as connect:  # type: ignore[arg-type]
            ca_file = tmp_path / "ca.pem"
            ca_file.write_text(front.ca_pem)
            yield Net(registry, front, connect, ca_file)


@pytest.fixture
def net(registry: FakeRegistry, tmp_path: Path, clean_env: None) -> Iterator[Net]:
    yield from make_net(registry, tmp_path)


@pytest.fixture
def auth_net(registry: FakeRegistry, tmp_path: Path, clean_env: None) -> Iterator[Net]:
    yield from make_net(registry, tmp_path, user="py-user", password="Py-Secret")


def test_sync_client_mints_and_sends_through_the_proxy(net: Net) -> None:
    app = net.app(proxy=net.proxy.url, ca_file=net.ca_file)
    assert app.proxy == net.proxy.url and app.ca_file is not None
    with icr_app.Client(app) as client:
        token = client.installation_token(net.installation)
        response = client.request(net.installation, "GET", "/projects")
        assert response.status_code == 200
    assert net.registry.mint_count(net.installation) == 1
    net.assert_only_tunnels(token.token)


async def test_async_client_mints_and_sends_through_the_proxy(net: Net) -> None:
    app = net.app(proxy=net.proxy.url, ca_file=str(net.ca_file))
    async with icr_app.AsyncClient(app) as client:
        token = await client.installation_token(net.installation)
    assert net.registry.mint_count(net.installation) == 1
    net.assert_only_tunnels(token.token)


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_the_environments_proxy_and_ssl_cert_file(net: Net, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, net.proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(net.ca_file))
    with icr_app.Client(net.app()) as client:
        client.installation_token(net.installation)
    net.assert_only_tunnels()


async def test_the_environments_proxy_async(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", net.proxy.url)
    async with icr_app.AsyncClient(net.app(ca_file=net.ca_file)) as client:
        await client.installation_token(net.installation)
    net.assert_only_tunnels()


@pytest.mark.parametrize("no_proxy", ["registry.test", ".test", "*", "registry.test:443"])
def test_no_proxy_sends_the_registry_direct(net: Net, monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> None:
    monkeypatch.setenv("HTTPS_PROXY", net.proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    # Direct to registry.test, which no DNS knows: a connection error, and the proxy saw nothing.
    app = net.app(ca_file=net.ca_file, retry_attempts=1)
    with icr_app.Client(app) as client:
        with pytest.raises(icr_app.TransportError):
            client.installation_token(net.installation)
    assert net.proxy.request_lines() == []


def test_no_proxy_for_another_port_keeps_the_proxy(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", net.proxy.url)
    monkeypatch.setenv("NO_PROXY", "registry.test:8443,other.test")
    with icr_app.Client(net.app(ca_file=net.ca_file)) as client:
        client.installation_token(net.installation)
    net.assert_only_tunnels()


def test_without_the_ca_the_registry_is_not_trusted(net: Net) -> None:
    with icr_app.Client(net.app(proxy=net.proxy.url, retry_attempts=1)) as client:
        with pytest.raises(icr_app.TransportError) as error:
            client.installation_token(net.installation)
    assert error.value.kind == "connect"
    assert net.registry.mint_count(net.installation) == 0


def test_a_missing_or_bad_ca_file_is_named(net: Net, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(icr_app.ConfigError, match="missing.pem"):
        net.app(ca_file=missing)
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(icr_app.ConfigError, match="holds no certificate"):
        net.app(ca_file=bad)


def test_a_proxy_that_requires_credentials(auth_net: Net) -> None:
    net = auth_net
    right = net.proxy.url_with_credentials("py-user", "Py-Secret")
    app = net.app(proxy=right, ca_file=net.ca_file)
    assert "Py-Secret" not in repr(app) and app.proxy == net.proxy.url
    with icr_app.Client(app) as client:
        client.installation_token(net.installation)
    net.assert_only_tunnels("Py-Secret")

    wrong = net.proxy.url_with_credentials("py-user", "Wr0ng-Secret")
    with icr_app.Client(net.app(proxy=wrong, ca_file=net.ca_file, retry_attempts=1)) as client:
        with pytest.raises(icr_app.TransportError) as error:
            client.installation_token(net.installation)
    text = f"{error.value} {error.value!r}"
    assert "Wr0ng-Secret" not in text and "py-user" not in text
    assert net.proxy.url in text and "credentials" in text, text


async def test_a_proxy_that_refuses_is_named(registry: FakeRegistry, tmp_path: Path, clean_env: None) -> None:
    for net in make_net(registry, tmp_path, forbid=True):
        async with icr_app.AsyncClient(net.app(proxy=net.proxy.url, ca_file=net.ca_file, retry_attempts=1)) as client:
            with pytest.raises(icr_app.TransportError) as error:
                await client.installation_token(net.installation)
        assert error.value.kind == "connect"
        assert net.proxy.url in str(error.value) and "refused to open a tunnel" in str(error.value)


def test_a_plain_http_registry_behind_a_proxy_is_refused(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    assert net.registry.app_id is not None and net.registry.private_key_pem is not None
    with pytest.raises(icr_app.ConfigError) as error:
        icr_app.App(net.registry.app_id, net.registry.private_key_pem, "http://registry.test", proxy=net.proxy.url)
    message = str(error.value)
    assert "in clear" in message and "https://" in message and "NO_PROXY" in message and net.proxy.url in message
    monkeypatch.setenv("HTTP_PROXY", net.proxy.url)
    with pytest.raises(icr_app.ConfigError, match="HTTP_PROXY"):
        icr_app.App(net.registry.app_id, net.registry.private_key_pem, "http://registry.test")
    assert net.proxy.request_lines() == []


def test_loopback_registries_never_use_the_proxy(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    assert net.registry.app_id is not None and net.registry.private_key_pem is not None
    monkeypatch.setenv("HTTPS_PROXY", net.proxy.url)
    monkeypatch.setenv("HTTP_PROXY", net.proxy.url)
    app = icr_app.App(net.registry.app_id, net.registry.private_key_pem, net.registry.base_url, proxy=net.proxy.url)
    with icr_app.Client(app) as client:
        client.installation_token(net.installation)
    assert net.proxy.request_lines() == []


def test_a_client_passed_in_is_used_as_it_is(net: Net) -> None:
    # The App names a proxy; the user's httpx client has none, and its own CA: used as given.
    app = net.app(proxy="http://127.0.0.1:9", ca_file=net.ca_file)
    transport = httpx.HTTPTransport(proxy=net.proxy.url, verify=ssl.create_default_context(cafile=str(net.ca_file)))
    with httpx.Client(transport=transport) as http:
        with icr_app.Client(app, http_client=http) as client:
            client.installation_token(net.installation)
    net.assert_only_tunnels()


async def test_an_https_proxy_is_trusted_through_the_ca_file(net: Net, tmp_path: Path) -> None:
    with TlsFront(net.proxy, host="127.0.0.1") as proxy_tls:
        bundle = tmp_path / "bundle.pem"
        bundle.write_text(net.front.ca_pem + proxy_tls.ca_pem)
        app = net.app(proxy=f"https://127.0.0.1:{proxy_tls.port}", ca_file=bundle)
        with icr_app.Client(app) as client:
            client.installation_token(net.installation)
        async with icr_app.AsyncClient(app) as aclient:
            await aclient.installation_token(net.installation)
    net.assert_only_tunnels()
