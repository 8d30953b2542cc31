"""Workers forked from a parent that holds a client (gunicorn's ``preload_app``, Celery's prefork
pool, ``multiprocessing`` with ``fork``), over real loopback HTTP against the fake registry and a
real ``redis-server``: tokens the parent cached are served in the children without a mint; a mint
the parent had in flight does not hang them; with a shared store the children share one mint per
installation; a keyless App (``signer=``) works in the child too. Every child must finish within a
deadline (a hang fails the test, the child killed)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import icr_app
from icr_app.testing import FakeRegistry

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")

WORKERS = 4
#: How long a child may take before it counts as hung (nothing here takes a second unhung).
DEADLINE = 30.0
#: ``redis_timeout`` long enough that a loaded machine never makes a child mint alone.
SLOW_MACHINE = 5.0


def fork_workers(work: Callable[[], dict[str, Any]], workers: int = WORKERS) -> list[dict[str, Any]]:
    """Forks ``workers`` children, each running ``work`` and sending back what it returns (as JSON
    through a pipe); fails on any error in a child, and on a child still running after
    ``DEADLINE`` seconds (killed)."""
    children = []
    for _ in range(workers):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read)
                os.write(write, json.dumps(work()).encode())
                code = 0
            except BaseException as e:
                sys.stderr.write(f"child failed: {e!r}\n")
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    results = []
    deadline = time.monotonic() + DEADLINE
    for pid, read in children:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"a forked worker hung (still running after {DEADLINE} s)")
            time.sleep(0.01)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        assert os.waitstatus_to_exitcode(status) == 0, "a forked worker failed (see its stderr above)"
        results.append(json.loads(data))
    return results


def make_app(registry: FakeRegistry, **options: Any) -> icr_app.App:
    assert registry.app_id is not None and registry.private_key_pem is not None
    return icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, **options)


def in_flight(client: icr_app.Client, installation: str) -> threading.Thread:
    """Starts a mint for ``installation`` in another thread of the parent (the registry delays
    it), so that it is in flight when the parent forks."""
    thread = threading.Thread(target=client.installation_token, args=(installation,))
    thread.start()
    time.sleep(0.3)
    return thread


@pytest.mark.parametrize("redis", [False, True], ids=["alone", "redis"])
def test_workers_forked_from_a_client_serve_cached_tokens_and_share_mints(
    registry: FakeRegistry, request: pytest.FixtureRequest, redis: bool
) -> None:
    redis_url: Optional[str] = request.getfixturevalue("redis_url") if redis else None
    options = {"redis_url": redis_url, "redis_timeout": SLOW_MACHINE} if redis_url else {}
    cached, cold, slow = registry.installation_ids
    client = icr_app.Client(make_app(registry, **options))
    parent_token = client.installation_token(cached)
    registry.inject_delay(1.0, path_prefix=f"/app/installations/{slow}/")
    thread = in_flight(client, slow)

    def work() -> dict[str, Any]:
        return {
            "cached": client.installation_token(cached).token == parent_token.token,
            "cold": client.installation_token(cold).token,
            "slow": client.installation_token(slow).token,
            "mints": client.stats().mints,
        }

    results = fork_workers(work)
    thread.join()

    # Served from the cache each child inherited: no mint in any child.
    assert all(r["cached"] for r in results)
    assert registry.mint_count(cached) == 1
    if redis:
        # One mint for the four children, through the shared store; the parent's slow mint
        # (its lease held when the children asked) reached them through the store too.
        assert registry.mint_count(cold) == 1
        assert len({r["cold"] for r in results}) == 1
        assert registry.mint_count(slow) == 1
        assert sum(r["mints"] for r in results) == 1
    else:
        # Alone, each child mints its own cold token; the parent's mint in flight was given up
        # in each child (which minted its own at once) and completed in the parent.
        assert registry.mint_count(cold) == WORKERS
        assert registry.mint_count(slow) == 1 + WORKERS
        assert all(r["mints"] == 2 for r in results)
    # The parent is untouched.
    assert client.installation_token(cached) == parent_token
    assert client.stats().mints == 2
    client.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the signer calls the openssl command")
def test_a_keyless_app_works_in_forked_workers(registry: FakeRegistry, tmp_path: Path) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    key = tmp_path / "kms-key.pem"
    key.write_text(registry.private_key_pem)

    def signer(message: bytes) -> bytes:
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(key)], input=message, capture_output=True, check=True
        )
        return done.stdout

    cached, cold, _ = registry.installation_ids
    app = icr_app.App(registry.app_id, signer=signer, base_url=registry.base_url)
    client = icr_app.Client(app)
    parent_token = client.installation_token(cached)

    def work() -> dict[str, Any]:
        return {
            "cached": client.installation_token(cached).token == parent_token.token,
            "cold": client.installation_token(cold).token.startswith("crs_"),
        }

    results = fork_workers(work)
    assert all(r["cached"] and r["cold"] for r in results)
    assert registry.mint_count(cached) == 1
    assert registry.mint_count(cold) == WORKERS
    client.close()


def test_an_async_app_made_before_the_fork_serves_its_cache_in_a_new_loop(registry: FakeRegistry) -> None:
    # Celery's prefork pool with an async task: the App is the parent's, the AsyncClient and its
    # event loop are made in the child.
    app = make_app(registry)
    cached = registry.installation_ids[0]
    with icr_app.Client(app) as client:
        parent_token = client.installation_token(cached)

    def work() -> dict[str, Any]:
        async def main() -> bool:
            async with icr_app.AsyncClient(app) as aclient:
                token = await aclient.installation_token(cached)
                return token.token == parent_token.token

        return {"cached": asyncio.run(main())}

    assert all(r["cached"] for r in fork_workers(work))
    assert registry.mint_count(cached) == 1
