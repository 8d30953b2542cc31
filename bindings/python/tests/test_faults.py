"""The registry misbehaving: its clock hours off, 503 and 429 with Retry-After, dropped
connections, redirects, oversized bodies, refused plain http, nothing listening."""

from __future__ import annotations

import socket
import time

import pytest

import icr_app
from icr_app.testing import FakeRegistry


@pytest.mark.parametrize("hours", [3, -3])
def test_registry_clock_hours_off(registry: FakeRegistry, client: icr_app.Client, installation: str, hours: int) -> None:
    registry.set_clock_offset(hours * 3600)
    token = client.installation_token(installation)
    assert registry.token_is_valid(token)
    assert abs(client.app.clock_offset - hours * 3600) < 5
    # The next app JWT is made on the registry's clock: no second refusal.
    assert len(client.installations()) == 3
    statuses = [r["status"] for r in registry.requests()]
    assert statuses.count(401) == 1, statuses
    # The token's local expiry is corrected for the offset.
    assert 7000 < token.remaining() <= 7200


def test_503_is_retried(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    registry.inject_status(503, path_prefix="/app/installations/")
    token = client.installation_token(installation)
    assert registry.token_is_valid(token)
    assert [r["status"] for r in registry.requests()] == [503, 200]


def test_429_retry_after_is_honoured(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    registry.inject_status(429, retry_after=1, path_prefix="/app/installations/")
    started = time.monotonic()
    client.installation_token(installation)
    assert time.monotonic() - started >= 0.9
    assert registry.mint_count(installation) == 1


async def test_503_retry_after_async(registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str) -> None:
    registry.inject_status(503, retry_after=1, path_prefix="/app/installations/")
    started = time.monotonic()
    await aclient.installation_token(installation)
    assert time.monotonic() - started >= 0.9


def test_exhausted_retries_raise_the_last_error(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, retry_attempts=1)
    registry.inject_status(503, times=5)
    with icr_app.Client(app) as client, pytest.raises(icr_app.ServerError) as error:
        client.installation_token(installation)
    assert error.value.status == 503
    registry.clear_faults()
    registry.inject_status(429, retry_after=120, times=5)
    with icr_app.Client(app) as client, pytest.raises(icr_app.RateLimitedError) as limited:
        client.installation(installation)
    assert limited.value.status == 429
    assert limited.value.retry_after == 120
    assert "retry after 120 s" in str(limited.value)


def test_dropped_connections_are_retried(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    registry.inject_drop_connection(path_prefix="/app/installations/")
    token = client.installation_token(installation)
    assert registry.token_is_valid(token)
    registry.inject_drop_connection(path_prefix="/app/installations")
    assert len(client.installations()) == 3


async def test_dropped_connection_async(registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str) -> None:
    registry.inject_drop_connection(path_prefix="/app/installations/")
    assert registry.token_is_valid(await aclient.installation_token(installation))


def test_dropped_connection_without_retries_is_a_transport_error(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, retry_attempts=1)
    registry.inject_drop_connection()
    with icr_app.Client(app) as client, pytest.raises(icr_app.TransportError) as error:
        client.installation_token(installation)
    assert error.value.kind == "connection_lost"
    assert error.value.status is None
    assert "the connection dropped; retry" in str(error.value)


def test_malformed_body(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, retry_attempts=1)
    registry.inject_malformed_body()
    with icr_app.Client(app) as client, pytest.raises(icr_app.Error, match="not the documented shape") as error:
        client.installation_token(installation)
    assert error.value.status == 200


def test_redirects_are_not_followed(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    with socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen(1)
        port = elsewhere.getsockname()[1]
        registry.inject_redirect(f"http://127.0.0.1:{port}/steal", status=307)
        with pytest.raises(icr_app.Error) as error:
            client.installation_token(installation)
        assert error.value.status == 307
        elsewhere.settimeout(0.2)
        with pytest.raises(OSError):
            elsewhere.accept()  # nothing went to the redirect's target


def test_bodies_are_capped(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, max_body=100)
    with icr_app.Client(app) as client, pytest.raises(icr_app.TransportError) as error:
        client.installation_token(installation)
    assert error.value.kind == "body_too_large"
    assert "exceeds 100 bytes" in str(error.value)


def test_plain_http_to_another_host_is_refused_before_sending(registry: FakeRegistry) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, "http://registry.invalid")
    with icr_app.Client(app) as client, pytest.raises(icr_app.TransportError) as error:
        client.installation_token("i-1")
    assert error.value.kind == "refused"
    assert "refusing to send credentials over plain http://" in str(error.value)
    assert app.policy.allow_insecure_http is False


def test_nothing_listening_is_a_connect_error(registry: FakeRegistry) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = icr_app.App(registry.app_id, registry.private_key_pem, f"http://127.0.0.1:{port}", retry_attempts=1)
    with icr_app.Client(app) as client, pytest.raises(icr_app.TransportError) as error:
        client.installation_token("i-1")
    assert error.value.kind == "connect"
    assert "check the base URL" in str(error.value)


def test_slow_registry_times_out(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, timeout=0.3, retry_attempts=1)
    registry.inject_delay(2.0)
    with icr_app.Client(app) as client, pytest.raises(icr_app.TransportError) as error:
        client.installation_token(installation)
    assert error.value.kind == "timeout"


@pytest.mark.parametrize("hours", [5, -5])
async def test_registry_clock_hours_off_async(
    registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str, hours: int
) -> None:
    registry.set_clock_offset(hours * 3600)
    assert registry.token_is_valid(await aclient.installation_token(installation))
    assert len(await aclient.installations()) == 3
    assert [r["status"] for r in registry.requests()].count(401) == 1
