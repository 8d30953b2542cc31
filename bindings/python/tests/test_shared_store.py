"""The shared token store (``redis_url``), against a real ``redis-server`` and the fake registry
over loopback: processes sharing one Redis mint once per installation (separate processes, as
two web workers are, and workers forked from one App); the async client shares too and never
blocks its event loop on Redis; Redis down costs no error; ``stats()`` counts what happened; a
bad URL is a ``ConfigError`` that shows no password."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import httpx
import pytest

import icr_app
from icr_app.testing import FakeRegistry

from conftest import free_port

WORKER = Path(__file__).with_name("web_worker.py")

#: ``redis_timeout`` for the tests that must share: long enough that a heavily loaded machine
#: never makes a Redis command give up (a command that gives up makes its process mint alone,
#: by design, and the count of mints would then be off). The outage tests keep the default.
#:
#: (A process that read the entry empty and took the lease just after the minter released it
#: used to mint again; the core now reads the entry once more after taking the lease.)
SLOW_MACHINE = 5.0


def make_app(registry: FakeRegistry, **options: Any) -> icr_app.App:
    assert registry.app_id is not None and registry.private_key_pem is not None
    return icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, **options)


def shared(redis_url: str) -> dict[str, Any]:
    """The App options of a test that must share through ``redis_url``."""
    return {"redis_url": redis_url, "redis_timeout": SLOW_MACHINE}


def sha256(token: icr_app.Token) -> str:
    return hashlib.sha256(token.token.encode()).hexdigest()


def run_workers(
    registry: FakeRegistry, installation: str, redis_url: str, modes: list[str], organization: Optional[str] = None
) -> list[dict[str, Any]]:
    """Starts one ``web_worker.py`` process per mode (``sync``/``async``), lets them all ask for
    the token at once (with ``organization``, ``ByOrganization(organization)``'s), and returns
    what each printed."""
    assert registry.app_id is not None and registry.private_key_pem is not None
    workers = []
    for mode in modes:
        env = dict(
            os.environ,
            ICR_BASE_URL=registry.base_url,
            ICR_APP_ID=registry.app_id,
            ICR_PRIVATE_KEY=registry.private_key_pem,
            ICR_INSTALLATION_ID=installation,
            ICR_REDIS_URL=redis_url,
            ICR_REDIS_TIMEOUT=str(SLOW_MACHINE),
            ICR_ASYNC="1" if mode == "async" else "0",
            ICR_ORGANIZATION_ID=organization or "",
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
        )
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.strip() == "ready", worker.communicate(timeout=30)[1]
        for worker in workers:  # as close together as the processes allow
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
            result = json.loads(out.strip().splitlines()[-1])
            result["stderr"] = err  # the package's warnings, if any (the last-resort handler's)
            results.append(result)
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:  # pragma: no cover - a failed assertion above
                worker.kill()
                worker.wait()


def test_two_worker_processes_mint_once(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    # The mint stays in flight for a while: whichever worker takes the lease mints, the other
    # finds the lease taken and reads the token the first one stores.
    registry.inject_delay(0.5, path_prefix=f"/app/installations/{installation}/")
    first, second = run_workers(registry, installation, redis_url, ["sync", "sync"])
    assert registry.mint_count(installation) == 1, (first, second)
    assert first["token_sha256"] == second["token_sha256"]
    stats = sorted([first["stats"], second["stats"]], key=lambda s: s["mints"])
    assert [s["mints"] for s in stats] == [0, 1]
    assert [s["shared_hits"] for s in stats] == [1, 0]
    assert all(s["shared_fallbacks"] == 0 and s["misses"] == 1 for s in stats)


def test_four_worker_processes_sync_and_async_mint_once(
    registry: FakeRegistry, redis_url: str, installation: str
) -> None:
    registry.inject_delay(0.5, path_prefix=f"/app/installations/{installation}/")
    results = run_workers(registry, installation, redis_url, ["sync", "async", "sync", "async"])
    assert registry.mint_count(installation) == 1, results
    assert len({r["token_sha256"] for r in results}) == 1
    assert sum(r["stats"]["mints"] for r in results) == 1
    assert sum(r["stats"]["shared_hits"] for r in results) == 3


def test_worker_processes_look_an_organization_up_once(registry: FakeRegistry, redis_url: str) -> None:
    # The lookup stays in flight for a while: whichever worker takes the organization's lease
    # looks it up and stores the installation's id; the others read it, then the token.
    org, installation = registry.organization_ids[0], registry.installation_ids[0]
    registry.inject_delay(0.5, path_prefix=f"/app/organizations/{org}/")
    results = run_workers(registry, installation, redis_url, ["sync", "async", "sync"], organization=org)
    assert registry.lookup_count(org) == 1, results
    assert registry.mint_count(installation) == 1, results
    assert len({r["token_sha256"] for r in results}) == 1
    stats = sorted((r["stats"] for r in results), key=lambda s: s["lookups"])
    assert [s["lookups"] for s in stats] == [0, 0, 1]
    assert [s["shared_lookups"] for s in stats] == [1, 1, 0]
    assert sum(s["mints"] for s in stats) == 1 and sum(s["shared_hits"] for s in stats) == 2
    assert all(s["shared_fallbacks"] == 0 for s in stats)


def test_a_reinstall_is_looked_up_once_for_the_fleet(registry: FakeRegistry, redis_url: str) -> None:
    # Two Apps with caches of their own (two processes' worth) on one Redis. After the
    # reinstall, the first to be refused looks the organization up again and stores the new
    # installation; the other, refused too, reads it (and the new token) from Redis.
    org, old = registry.organization_ids[0], registry.installation_ids[0]
    who = icr_app.ByOrganization(org)
    web, worker = make_app(registry, **shared(redis_url)), make_app(registry, **shared(redis_url))
    with icr_app.Client(web) as a, icr_app.Client(worker) as b:
        assert "projects" in a.get_json(who, "/projects") and "projects" in b.get_json(who, "/projects")
        assert (registry.lookup_count(org), registry.mint_count(old)) == (1, 1)
        assert (worker.stats().shared_lookups, worker.stats().shared_hits, worker.stats().lookups) == (1, 1, 0)
        new = registry.reinstall(org)
        assert a.request(who, "GET", "/projects").status_code == 200
        assert b.request(who, "GET", "/projects").status_code == 200
        assert registry.lookup_count(org) == 2
        assert (registry.mint_count(old), registry.mint_count(new)) == (1, 1)
        assert (worker.stats().shared_lookups, worker.stats().shared_hits, worker.stats().lookups) == (2, 2, 0)
        assert web.stats().lookups == 2
        assert a.installation_token(who) == a.installation_token(new)
        assert a.installation_token(who).token == b.installation_token(who).token
        assert b.installation_token(who).installation_id == new


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_workers_forked_from_one_app_mint_once(registry: FakeRegistry, redis_url: str) -> None:
    # gunicorn --preload: the App and client are made before the workers fork. Each child keeps
    # the parent's cached tokens and gets its own Redis connections and lease owner id.
    installation, other = registry.installation_ids[0], registry.installation_ids[1]
    app = make_app(registry)
    client = icr_app.Client(app, redis_url=redis_url, redis_timeout=SLOW_MACHINE)
    parent_other = client.installation_token(other)  # the parent now holds a Redis connection
    registry.inject_delay(0.5, path_prefix=f"/app/installations/{installation}/")
    children = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read)
                token = client.installation_token(installation)
                shared = client.installation_token(other)
                result = {"token": sha256(token), "other": sha256(shared), "stats": client.stats().as_dict()}
                os.write(write, json.dumps(result).encode())
                code = 0
            except BaseException as e:
                sys.stderr.write(f"child failed: {e!r}\n")
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    results = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        results.append(json.loads(data))
    assert registry.mint_count(installation) == 1
    assert results[0]["token"] == results[1]["token"]
    # The parent's token reached both children from the cache they inherited, not a mint.
    assert registry.mint_count(other) == 1
    assert all(r["other"] == sha256(parent_other) for r in results)
    # Each child counts from zero: one of them minted, the other read it from Redis.
    assert sorted(r["stats"]["mints"] for r in results) == [0, 1]
    assert sorted(r["stats"]["shared_hits"] for r in results) == [0, 1]
    assert all(r["stats"]["shared_fallbacks"] == 0 for r in results)
    # The parent still serves from its own cache, and its store still works.
    assert client.installation_token(other) == parent_other
    assert client.installation_token(installation).token.startswith("crs_")
    assert registry.mint_count(installation) == 1
    client.close()


async def test_async_clients_share_through_redis(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    registry.inject_delay(0.3, path_prefix=f"/app/installations/{installation}/")
    # Two Apps (two processes' worth of cache) in one event loop, on one Redis.
    web, worker = make_app(registry), make_app(registry)
    a = icr_app.AsyncClient(web, redis_url=redis_url, redis_timeout=SLOW_MACHINE)
    b = icr_app.AsyncClient(worker, redis_url=redis_url, redis_timeout=SLOW_MACHINE)
    async with a, b:
        first, second = await asyncio.gather(a.installation_token(installation), b.installation_token(installation))
        assert first.token == second.token
        assert await a.installation_token(installation) == first  # then a local hit
        assert a.stats() == web.stats()
    assert registry.mint_count(installation) == 1
    assert web.stats().mints + worker.stats().mints == 1
    assert web.stats().shared_hits + worker.stats().shared_hits == 1


@pytest.fixture
def hung_redis() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def test_a_hung_redis_never_blocks_the_event_loop(
    registry: FakeRegistry, hung_redis: int, installation: str
) -> None:
    app = make_app(registry)
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    async with icr_app.AsyncClient(app, redis_url=f"redis://127.0.0.1:{hung_redis}/0") as client:
        token = await client.installation_token(installation)
    elapsed = time.monotonic() - started
    done.set()
    await task
    assert token.token.startswith("crs_")
    # The store's timeout (300 ms) was waited for, in a worker thread: the loop kept ticking.
    assert elapsed >= 0.25
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.15, f"the event loop stalled for {max(gaps):.3f} s"
    stats = app.stats()
    assert (stats.mints, stats.shared_fallbacks, stats.shared_hits) == (1, 1, 0)
    assert registry.mint_count(installation) == 1


def test_redis_down_still_mints_without_an_error(
    registry: FakeRegistry, installation: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    app = make_app(registry)
    with caplog.at_level(logging.WARNING, logger="icr_app"):
        with icr_app.Client(app, redis_url=down) as client:
            started = time.monotonic()
            token = client.installation_token(installation)
            assert time.monotonic() - started < 5
            assert client.installation_token(installation) == token  # a local hit
            # Within the pause after a failure the store is not asked again.
            client.installation_token(registry.installation_ids[1])
    assert token.token.startswith("crs_")
    assert registry.mint_count(installation) == 1
    assert registry.mint_count(registry.installation_ids[1]) == 1
    stats = app.stats()
    assert (stats.hits, stats.mints, stats.shared_hits, stats.shared_fallbacks) == (1, 2, 0, 1)
    # One warning for the outage, naming the cause, with the password hidden.
    warnings = [r for r in caplog.records if r.name == "icr_app" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "refused the connection" in message and "redis://:***@127.0.0.1" in message
    assert "hunter2" not in caplog.text
    assert app.redis_url is not None and "hunter2" not in app.redis_url


async def test_redis_down_async_still_mints(registry: FakeRegistry, installation: str) -> None:
    app = make_app(registry)
    async with icr_app.AsyncClient(app, redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        token = await client.installation_token(installation)
    assert token.token.startswith("crs_")
    assert registry.mint_count(installation) == 1
    assert app.stats().shared_fallbacks == 1


def test_stats_count_a_hit_a_miss_a_mint_and_a_shared_hit(
    registry: FakeRegistry, redis_url: str, installation: str
) -> None:
    web, worker = make_app(registry), make_app(registry)
    a = icr_app.Client(web, redis_url=redis_url, redis_timeout=SLOW_MACHINE)
    b = icr_app.Client(worker, redis_url=redis_url, redis_timeout=SLOW_MACHINE)
    with a, b:
        zero = a.stats()
        assert zero.as_dict() == {
            "hits": 0,
            "misses": 0,
            "mints": 0,
            "refreshes": 0,
            "failures": {},
            "waits": 0,
            "shared_hits": 0,
            "shared_fallbacks": 0,
            "lookups": 0,
            "shared_lookups": 0,
        }
        token = a.installation_token(installation)  # a miss, and a mint
        assert a.installation_token(installation) == token  # a hit
        assert b.installation_token(installation).token == token.token  # a miss, and a shared hit
        with pytest.raises(icr_app.NotFoundError):
            a.installation_token("no-such-installation")  # a miss, a mint, and a failure
        stats = a.stats()
        assert stats == web.stats() and stats != zero
        assert (stats.hits, stats.misses, stats.mints, stats.refreshes) == (1, 2, 2, 0)
        assert (stats.waits, stats.shared_hits, stats.shared_fallbacks) == (0, 0, 0)
        assert stats.failures == {"not_found": 1}
        assert b.stats().as_dict() == {
            "hits": 0,
            "misses": 1,
            "mints": 0,
            "refreshes": 0,
            "failures": {},
            "waits": 0,
            "shared_hits": 1,
            "shared_fallbacks": 0,
            "lookups": 0,
            "shared_lookups": 0,
        }
        assert repr(b.stats()) == (
            "Stats(hits=0, misses=1, mints=0, refreshes=0, failures={}, waits=0, shared_hits=1, shared_fallbacks=0, "
            "lookups=0, shared_lookups=0)"
        )
        # A snapshot: taken before, it does not move.
        before = b.stats()
        b.installation_token(installation)
        assert before.hits == 0 and b.stats().hits == 1
    assert registry.mint_count(installation) == 1


def test_the_store_belongs_to_the_app(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    app = make_app(registry)
    assert app.redis_url is None
    with icr_app.Client(app, redis_url=redis_url, redis_timeout=SLOW_MACHINE):
        pass
    assert app.redis_url == redis_url
    icr_app.Client(app, redis_url=redis_url, redis_timeout=SLOW_MACHINE)  # the same URL again: fine
    with pytest.raises(icr_app.ConfigError, match="an App has one store") as error:
        icr_app.Client(app, redis_url="redis://:hunter2@127.0.0.1:6390/1")
    assert "hunter2" not in str(error.value) and redis_url in str(error.value)
    with pytest.raises(icr_app.ConfigError, match="an App has one store"):
        icr_app.AsyncClient(app, redis_url="redis://127.0.0.1:6390/1")
    # A client of the App given no URL shares through the App's store all the same; so does an
    # App given the URL itself.
    with icr_app.Client(app) as plain:
        token = plain.installation_token(installation)
    other = make_app(registry, redis_url=redis_url, redis_timeout=SLOW_MACHINE)
    assert other.redis_url == redis_url
    with icr_app.Client(other) as client:
        assert client.installation_token(installation).token == token.token
    assert registry.mint_count(installation) == 1
    assert other.stats().shared_hits == 1


def test_redis_timeout_is_the_stores(registry: FakeRegistry, redis_url: str, hung_redis: int, installation: str) -> None:
    app = make_app(registry, redis_url=redis_url, redis_timeout=2)
    icr_app.Client(app, redis_url=redis_url)  # no timeout: the App's
    icr_app.Client(app, redis_url=redis_url, redis_timeout=2.0)  # the same: fine
    with pytest.raises(icr_app.ConfigError, match="gives up after 2000 ms; an App has one store"):
        icr_app.Client(app, redis_url=redis_url, redis_timeout=1)
    with pytest.raises(icr_app.ConfigError, match="give redis_url too"):
        icr_app.Client(make_app(registry), redis_timeout=1)
    with pytest.raises(icr_app.ConfigError, match="give redis_url too"):
        make_app(registry, redis_timeout=1)
    with pytest.raises(icr_app.ConfigError, match="redis_timeout"):
        make_app(registry, redis_url=redis_url, redis_timeout=-1)
    # It is how long a command may take: against a Redis that never answers, 0.1 s, then 0.6 s
    # (and a mint after each).
    took = []
    for timeout in (0.1, 0.6):
        app = make_app(registry, redis_url=f"redis://127.0.0.1:{hung_redis}/0", redis_timeout=timeout)
        started = time.monotonic()
        with icr_app.Client(app) as client:
            client.installation_token(installation)
        took.append(time.monotonic() - started)
        assert took[-1] >= timeout * 0.9
        assert app.stats().shared_fallbacks == 1
    assert took[1] - took[0] >= 0.35, took


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("http://:hunter2@127.0.0.1:6379/0", "the scheme http:// is not a Redis one"),
        ("redis://:hunter2@127.0.0.1:99999/0", "invalid port number"),
        ("redis://:hunter2@0.0.0.0:6379/0", "wildcard address"),
        ("redis://:hunter2@127.0.0.1:6379/not-a-number", "database"),
        ("hunter2", "relative URL without a base"),
    ],
)
def test_a_bad_redis_url_is_a_config_error_without_the_password(
    registry: FakeRegistry, url: str, cause: str
) -> None:
    app = make_app(registry)
    with pytest.raises(icr_app.ConfigError) as error:
        icr_app.Client(app, redis_url=url)
    assert cause in str(error.value)
    assert str(error.value).startswith("invalid Redis URL: ")
    assert "hunter2" not in str(error.value) and "hunter2" not in repr(error.value)
    assert isinstance(error.value, icr_app.Error)
    assert app.redis_url is None  # nothing attached: a good URL may follow
    with pytest.raises(icr_app.ConfigError):
        make_app(registry, redis_url=url)


def test_a_revoked_token_leaves_the_shared_entry(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    with icr_app.Client(make_app(registry, **shared(redis_url))) as a:
        revoked = a.installation_token(installation)
        assert a.revoke_all() == 1
    worker = make_app(registry, **shared(redis_url))
    with icr_app.Client(worker) as b:
        fresh = b.installation_token(installation)
    assert fresh.token != revoked.token
    assert registry.token_is_valid(fresh) and not registry.token_is_valid(revoked)
    assert registry.mint_count(installation) == 2
    assert worker.stats().shared_hits == 0


def test_installation_auth_shares_through_redis(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    with icr_app.Client(make_app(registry, **shared(redis_url))) as a:
        a.installation_token(installation)
    worker = make_app(registry, **shared(redis_url))
    with icr_app.Client(worker) as b:
        auth = icr_app.InstallationAuth(b, installation)
        with httpx.Client(base_url=registry.base_url, auth=auth) as http:
            assert http.get("/projects", params={"limit": 1, "page": 0}).status_code == 200
    assert registry.mint_count(installation) == 1
    assert worker.stats().shared_hits == 1


def test_store_steps_driven_by_hand(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    """What a driver of another runtime does with a ``Store`` step: ``run()`` it, report the
    reply with ``handle_store``. The commands are the core's."""

    def drive(op: icr_app.Operation) -> tuple[Any, list[str], list[str]]:
        commands: list[str] = []
        shown: list[str] = []
        with httpx.Client() as http:
            while True:
                step = op.poll()
                if isinstance(step, icr_app.Done):
                    return step.value, commands, shown
                if isinstance(step, icr_app.Store):
                    assert step.key.startswith("icr-app:v2:")
                    reply = step.run()
                    assert reply.ok and reply.error is None
                    commands.append(step.command)
                    shown += [repr(step), repr(reply)]
                    op.handle_store(step.id, reply)
                elif isinstance(step, icr_app.Send):
                    response = http.request(step.method, step.url, headers=step.headers, content=step.body or None)
                    op.handle_response(step.id, response.status_code, response.headers.raw, response.content)
                elif isinstance(step, icr_app.Sign):  # pragma: no cover - only for an App made with signer=
                    raise AssertionError("an App with its private key signs in the core")
                else:  # pragma: no cover - no other process holds the lease here
                    time.sleep(max(0.0, step.until - time.time()))

    minted, commands, shown = drive(icr_app.GetToken(make_app(registry, **shared(redis_url)), installation))
    assert isinstance(minted, icr_app.Token)
    assert commands[:2] == ["get", "lease"] and commands[-1] == "put" and set(commands) <= {"get", "lease", "put"}
    read, commands, more = drive(icr_app.GetToken(make_app(registry, **shared(redis_url)), installation))
    assert isinstance(read, icr_app.Token) and read.token == minted.token
    assert commands == ["get"]
    assert registry.mint_count(installation) == 1
    # Steps and replies show names and sizes, never a token or a sealed value.
    for text in shown + more:
        assert minted.token not in text
        assert text.startswith(("Store(id=", "StoreReply("))
    # Without a store attached there is nothing to run.
    step = icr_app.GetToken(make_app(registry), installation).poll()
    assert isinstance(step, (icr_app.Send, icr_app.Done))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_store_step_from_before_a_fork_is_not_run_in_the_child(
    registry: FakeRegistry, redis_url: str, installation: str
) -> None:
    # Its store's connections are the parent's: the child must not write on them.
    op = icr_app.GetToken(make_app(registry, **shared(redis_url)), installation)
    step = op.poll()
    assert isinstance(step, icr_app.Store) and step.command == "get"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            reply = step.run()
            forked = not reply.ok and "forked" in (reply.error or "")
            try:
                op.handle_store(step.id, reply)
            except icr_app.ConfigError:
                code = 0 if forked else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # In the parent the step runs as usual.
    reply = step.run()
    assert reply.ok, reply.error
    op.handle_store(step.id, reply)
    op.abandon()
