"""A shared store over TLS (``rediss://``) trusting ``App(ca_file=...)``: a real ``redis-server``
serving TLS with a certificate from a CA made in the test (by the ``openssl`` command), and the
fake registry over loopback. Two Apps (two processes' worth of cache) share one mint when the CA
file is given; without it the certificate is refused, the store is set aside, and each App mints
on its own, with no error."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import icr_app
from icr_app.testing import FakeRegistry

from conftest import free_port

#: As in test_shared_store.py: a Redis command that gives up makes its process mint alone.
SLOW_MACHINE = 5.0


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_certificate(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=icr-app test CA", cwd=workdir)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=workdir)
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "1", "-extfile", "san.ext", cwd=workdir)
    return workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A ``redis-server`` serving TLS only, on a free loopback port: (its port, the CA file)."""
    binary, tool = shutil.which("redis-server"), shutil.which("openssl")
    if binary is None or tool is None:
        pytest.skip("redis-server or openssl is not installed (./run-tests installs both)")
    ca, cert, key = make_ca_and_certificate(tmp_path)
    port = free_port()
    log = open(tmp_path / "redis.log", "wb")
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while b"Ready to accept connections" not in (tmp_path / "redis.log").read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start with TLS: see {tmp_path / 'redis.log'}")
            time.sleep(0.02)
        yield port, ca
    finally:
        process.terminate()
        process.wait(5)
        log.close()


def make_app(registry: FakeRegistry, **options: object) -> icr_app.App:
    assert registry.app_id is not None and registry.private_key_pem is not None
    return icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, **options)  # type: ignore[arg-type]


def test_rediss_trusts_the_ca_file(registry: FakeRegistry, installation: str, tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    web = make_app(registry, redis_url=url, redis_timeout=SLOW_MACHINE, ca_file=ca)
    worker = make_app(registry, redis_url=url, redis_timeout=SLOW_MACHINE, ca_file=str(ca))
    with icr_app.Client(web) as a, icr_app.Client(worker) as b:
        first = a.installation_token(installation)
        second = b.installation_token(installation)
    assert first.token == second.token
    assert registry.mint_count(installation) == 1
    assert worker.stats().shared_hits == 1 and worker.stats().mints == 0


async def test_rediss_trusts_the_ca_file_from_the_async_client(
    registry: FakeRegistry, installation: str, tls_redis: tuple[int, Path]
) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    web = make_app(registry, redis_url=url, redis_timeout=SLOW_MACHINE, ca_file=ca)
    worker = make_app(registry, redis_url=url, redis_timeout=SLOW_MACHINE, ca_file=ca)
    async with icr_app.AsyncClient(web) as a, icr_app.AsyncClient(worker) as b:
        first = await a.installation_token(installation)
        second = await b.installation_token(installation)
    assert first.token == second.token
    assert registry.mint_count(installation) == 1


def test_rediss_without_the_ca_file_is_set_aside(
    registry: FakeRegistry, installation: str, tls_redis: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = tls_redis
    url = f"rediss://user:hunter2@127.0.0.1:{port}/0"
    web, worker = make_app(registry, redis_url=url), make_app(registry, redis_url=url)
    with icr_app.Client(web) as a, icr_app.Client(worker) as b:
        # The certificate is not trusted: no error, each mints alone, the password never shown.
        assert a.installation_token(installation).token
        assert b.installation_token(installation).token
    assert registry.mint_count(installation) == 2
    assert "hunter2" not in caplog.text
