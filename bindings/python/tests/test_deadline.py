"""The timeout is for the whole exchange (issue 21, finding 4): a registry that trickles one
header line every 0.3 s, for 30 s, never holds a call past ``App(timeout=...)``, sync or async,
for a mint or for a call's own request."""

from __future__ import annotations

import time

import pytest

import icr_app
from icr_app.testing import FakeRegistry

from loopback import TricklingRegistry

APP_ID = "d23967cc-dd16-452b-8af4-869965745978"
TIMEOUT = 2.0
#: A correctness bound, not a benchmark: the timeout, plus room for a slow machine.
BOUND = TIMEOUT + 5.0


def slow_app(registry: TricklingRegistry) -> icr_app.App:
    return icr_app.App(APP_ID, FakeRegistry.DEMO_PRIVATE_KEY_PEM, registry.base_url, timeout=TIMEOUT, retry_attempts=1)


def assert_timed_out(error: pytest.ExceptionInfo[icr_app.TransportError], took: float) -> None:
    assert error.value.kind == "timeout", str(error.value)
    assert "App(timeout=...)" in str(error.value)
    assert f"within {TIMEOUT:g} s" in str(error.value)
    assert TIMEOUT - 0.5 <= took < BOUND, took


def test_a_mint_ends_by_the_timeout() -> None:
    with TricklingRegistry() as slow, icr_app.Client(slow_app(slow)) as client:
        started = time.monotonic()
        with pytest.raises(icr_app.TransportError) as error:
            client.installation_token("i-1")
        assert_timed_out(error, time.monotonic() - started)


def test_a_request_ends_by_the_timeout() -> None:
    with TricklingRegistry(mints=True) as slow, icr_app.Client(slow_app(slow)) as client:
        client.installation_token("i-1")
        started = time.monotonic()
        with pytest.raises(icr_app.TransportError) as error:
            client.request("i-1", "GET", "/projects")
        assert_timed_out(error, time.monotonic() - started)
        assert slow.requests[-1].startswith("GET /projects")
        # The next exchange has a deadline of its own.
        started = time.monotonic()
        with pytest.raises(icr_app.TransportError) as again:
            client.get_json("i-1", "/projects")
        assert_timed_out(again, time.monotonic() - started)


async def test_async_mint_ends_by_the_timeout() -> None:
    with TricklingRegistry() as slow:
        async with icr_app.AsyncClient(slow_app(slow)) as client:
            started = time.monotonic()
            with pytest.raises(icr_app.TransportError) as error:
                await client.installation_token("i-1")
            assert_timed_out(error, time.monotonic() - started)


async def test_async_request_ends_by_the_timeout() -> None:
    with TricklingRegistry(mints=True) as slow:
        async with icr_app.AsyncClient(slow_app(slow)) as client:
            started = time.monotonic()
            with pytest.raises(icr_app.TransportError) as error:
                await client.request("i-1", "GET", "/projects")
            assert_timed_out(error, time.monotonic() - started)
            assert any(r.startswith("POST /app/installations/i-1/accessTokens") for r in slow.requests)


def test_a_fast_registry_is_unaffected(registry: FakeRegistry, installation: str) -> None:
    """Many exchanges on one pooled connection: each has its own deadline."""
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, timeout=0.5)
    with icr_app.Client(app) as client:
        for _ in range(3):
            assert client.request(installation, "GET", "/projects").status_code == 200
            time.sleep(0.3)
        assert client.request(installation, "GET", "/projects").status_code == 200
