"""Single flight: 64 threads and 500 tasks asking for one cold installation cause exactly one mint;
abandoning (an exception, a cancelled task) releases a mint in flight at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import icr_app
from icr_app.testing import FakeRegistry


def test_64_threads_one_cold_installation_one_mint(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    registry.inject_delay(0.2, path_prefix="/app/installations/")  # keep the mint in flight
    barrier = threading.Barrier(64)
    tokens: list[icr_app.Token] = []
    errors: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            tokens.append(client.installation_token(installation))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(tokens) == 64
    assert len({t.token for t in tokens}) == 1
    assert registry.mint_count(installation) == 1


async def test_500_tasks_one_cold_installation_one_mint(
    registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str
) -> None:
    registry.inject_delay(0.2, path_prefix="/app/installations/")
    tokens = await asyncio.gather(*(aclient.installation_token(installation) for _ in range(500)))
    assert len({t.token for t in tokens}) == 1
    assert registry.mint_count(installation) == 1


def test_threads_on_different_installations_do_not_wait_for_each_other(
    registry: FakeRegistry, client: icr_app.Client
) -> None:
    slow, fast = registry.installation_ids[0], registry.installation_ids[1]
    registry.inject_delay(1.0, path_prefix=f"/app/installations/{slow}/")
    thread = threading.Thread(target=client.installation_token, args=(slow,))
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    client.installation_token(fast)
    assert time.monotonic() - started < 0.8
    thread.join()


async def test_a_cancelled_task_releases_its_mint(
    registry: FakeRegistry, aclient: icr_app.AsyncClient, installation: str
) -> None:
    registry.inject_delay(5.0, path_prefix="/app/installations/")
    first = asyncio.ensure_future(aclient.installation_token(installation))
    await asyncio.sleep(0.3)
    waiter = asyncio.ensure_future(aclient.installation_token(installation))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    started = time.monotonic()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The waiter is woken at once and mints itself, instead of waiting out the fetch timeout.
    token = await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 2
    assert registry.token_is_valid(token)


def test_an_interrupted_thread_releases_its_mint(
    registry: FakeRegistry, app: icr_app.App, installation: str
) -> None:
    # The first exchange fails in the driver itself (not an httpx error): the operation is
    # abandoned on the way out, and the next caller mints at once.
    import httpx

    class Boom(Exception):
        pass

    def explode(request: httpx.Request) -> httpx.Response:
        raise Boom()

    with httpx.Client(transport=httpx.MockTransport(explode)) as http:
        with icr_app.Client(app, http_client=http) as broken, pytest.raises(Boom):
            broken.installation_token(installation)
    started = time.monotonic()
    with icr_app.Client(app) as client:
        client.installation_token(installation)
    assert time.monotonic() - started < 1
    assert registry.mint_count(installation) == 1
