"""Fixtures: a fake registry (real loopback HTTP) per test, an App and clients on it; a real
``redis-server`` on a free loopback port for the shared store's tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

import icr_app
from icr_app.testing import FakeRegistry

#: The repository's fixtures, shared with the Rust tests.
CORE_FIXTURES = Path(__file__).resolve().parents[3] / "core" / "tests" / "fixtures"


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry.demo() as registry:
        yield registry


@pytest.fixture
def app(registry: FakeRegistry) -> icr_app.App:
    assert registry.app_id is not None and registry.private_key_pem is not None
    return icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)


@pytest.fixture
def client(app: icr_app.App) -> Iterator[icr_app.Client]:
    with icr_app.Client(app) as client:
        yield client


@pytest.fixture
async def aclient(app: icr_app.App) -> AsyncIterator[icr_app.AsyncClient]:
    async with icr_app.AsyncClient(app) as client:
        yield client


@pytest.fixture
def installation(registry: FakeRegistry) -> str:
    return registry.installation_ids[0]


def free_port() -> int:
    """A loopback port nothing listens on (free when asked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_command(port: int, *words: str) -> bytes:
    """Sends one command to the Redis on ``port`` (RESP, plain socket) and returns its first
    reply line."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n".encode() + w.encode() + b"\r\n" for w in words
    )
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
        s.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``redis-server`` on a free loopback port for the session, writing nothing to disk;
    its port. Skipped only when ``redis-server`` is not installed (``./run-tests`` installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (./run-tests installs it: apt-get install -y redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    log = open(workdir / "redis.log", "wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis_command(port, "PING") == b"+PONG":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: see {workdir / 'redis.log'}")
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def redis_url(redis_server: int) -> str:
    """The session's Redis, emptied for this test."""
    assert redis_command(redis_server, "FLUSHALL") == b"+OK"
    return f"redis://127.0.0.1:{redis_server}/0"
