"""``App(app_id, signer=...)``: a key kept outside this process (a KMS, an HSM), its signature the
core's ``Sign`` step, performed by the drivers, over real loopback HTTP against the fake registry.

The signer here calls ``openssl dgst -sha256 -sign KEYFILE`` in a subprocess (the demo app's key
in a file): a signer that calls out of process, as a KMS client does.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import icr_app
from icr_app.testing import FakeRegistry

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the signer calls the openssl command")


@pytest.fixture
def key_file(registry: FakeRegistry, tmp_path: Path) -> Path:
    """The demo app's private key, in a file only the signer reads."""
    assert registry.private_key_pem is not None
    path = tmp_path / "kms-key.pem"
    path.write_text(registry.private_key_pem)
    path.chmod(0o600)
    return path


@pytest.fixture
def installations(registry: FakeRegistry) -> list[str]:
    """Four installations: the demo's three and one more."""
    assert registry.app_id is not None
    return [*registry.installation_ids, registry.add_installation(registry.app_id, "Delta Carbon")]


class Kms:
    """A signer calling ``openssl`` out of process, counting its calls."""

    def __init__(self, key: Path, delay: float = 0.0) -> None:
        self.key = key
        self.delay = delay
        self.calls = 0
        self.threads: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, message: bytes) -> bytes:
        with self.lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=message, capture_output=True, check=True
        )
        return done.stdout

    async def sign_async(self, message: bytes) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        process = await asyncio.create_subprocess_exec(
            "openssl",
            "dgst",
            "-sha256",
            "-sign",
            str(self.key),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(message)
        if process.returncode != 0:  # pragma: no cover - the key is good
            raise RuntimeError(err.decode(errors="replace"))
        return out


def keyless(registry: FakeRegistry, signer: Any, **kwargs: Any) -> icr_app.App:
    """An App of the demo app without its key: ``signer`` signs."""
    assert registry.app_id is not None
    return icr_app.App(registry.app_id, base_url=registry.base_url, signer=signer, **kwargs)


def in_threads(n: int, work: Callable[[int], object]) -> list[object]:
    """``work(i)`` in ``n`` threads started together; every result (or exception) in order."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_16_threads_cold_over_4_installations_one_signature_one_mint_each(
    registry: FakeRegistry, key_file: Path, installations: list[str]
) -> None:
    kms = Kms(key_file, delay=0.05)
    app = keyless(registry, kms)
    assert app.signer is kms
    assert app.fingerprint is None, "the key is not in this process"
    assert "signer=" in repr(app)
    with icr_app.Client(app) as client:
        tokens = in_threads(16, lambda i: client.installation_token(installations[i % 4]))
        assert all(isinstance(t, icr_app.Token) for t in tokens), tokens
        assert kms.calls == 1, "one signature for every caller"
        for i, installation in enumerate(installations):
            assert registry.mint_count(installation) == 1
            token = tokens[i]
            assert isinstance(token, icr_app.Token) and token.installation_id == installation
            assert registry.token_is_valid(token)
        # The JWT it signed serves the app calls and App.jwt() too.
        assert len(client.installations()) == 4
        assert client.jwt().count(".") == 2
        assert kms.calls == 1


def test_app_jwt_signs_through_a_plain_signer(registry: FakeRegistry, key_file: Path) -> None:
    kms = Kms(key_file)
    app = keyless(registry, kms)
    jwts = in_threads(8, lambda _: app.jwt())
    assert kms.calls == 1
    assert len(set(jwts)) == 1 and isinstance(jwts[0], str) and jwts[0].count(".") == 2
    with icr_app.Client(app) as client:  # the registry accepts it
        assert client.app_token().installation_id is None
    assert kms.calls == 1


async def test_async_signer_16_tasks_one_signature(
    registry: FakeRegistry, key_file: Path, installations: list[str]
) -> None:
    kms = Kms(key_file, delay=0.05)
    app = keyless(registry, kms.sign_async)
    async with icr_app.AsyncClient(app) as client:
        tokens = await asyncio.gather(*(client.installation_token(installations[i % 4]) for i in range(16)))
        assert kms.calls == 1, "one signature for every task"
        for installation in installations:
            assert registry.mint_count(installation) == 1
        assert {t.installation_id for t in tokens} == set(installations)
        assert len(await client.installations()) == 4
        assert kms.calls == 1
        assert client.jwt().count(".") == 2, "the JWT signed for the calls is cached"


async def test_async_client_runs_a_plain_signer_off_the_event_loop(
    registry: FakeRegistry, key_file: Path, installations: list[str]
) -> None:
    kms = Kms(key_file, delay=0.3)
    app = keyless(registry, kms)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        async with icr_app.AsyncClient(app) as client:
            await asyncio.gather(*(client.installation_token(i) for i in installations))
    finally:
        ticker.cancel()
    assert kms.calls == 1
    assert threading.get_ident() not in kms.threads, "called in a worker thread"
    assert ticks >= 10, "the event loop kept running while the signer worked"


def failing(message: bytes) -> bytes:
    raise RuntimeError("the KMS refused: key disabled")


def test_a_signer_that_raises_is_every_callers_signing_error(registry: FakeRegistry, installations: list[str]) -> None:
    calls = 0

    def signer(message: bytes) -> bytes:
        nonlocal calls
        calls += 1
        time.sleep(0.05)
        return failing(message)

    app = keyless(registry, signer)
    with icr_app.Client(app) as client:
        errors = in_threads(16, lambda i: client.installation_token(installations[i % 4]))
        for error in errors:
            assert isinstance(error, icr_app.Error), error
            assert error.code == "signing"
            assert "RuntimeError: the KMS refused: key disabled" in str(error)
        assert 1 <= calls <= 16
        for installation in installations:
            assert registry.mint_count(installation) == 0
        # Asked again next time.
        before = calls
        with pytest.raises(icr_app.Error, match="key disabled") as raised:
            client.installations()
        assert raised.value.code == "signing" and calls == before + 1
        with pytest.raises(icr_app.Error, match="key disabled"):
            app.jwt()


async def test_an_async_signer_that_raises_is_every_tasks_signing_error(
    registry: FakeRegistry, installations: list[str]
) -> None:
    calls = 0

    async def signer(message: bytes) -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise PermissionError("kms:Sign denied")

    async with icr_app.AsyncClient(keyless(registry, signer)) as client:
        results = await asyncio.gather(
            *(client.installation_token(installations[i % 4]) for i in range(16)), return_exceptions=True
        )
    assert calls == 1
    for error in results:
        assert isinstance(error, icr_app.Error) and error.code == "signing", error
        assert "PermissionError: kms:Sign denied" in str(error)


def test_a_signer_that_returns_no_bytes_is_a_signing_error(registry: FakeRegistry, installation: str) -> None:
    app = keyless(registry, lambda message: "not bytes")
    with icr_app.Client(app) as client, pytest.raises(icr_app.Error, match="returned str, not the signature") as e:
        client.installation_token(installation)
    assert e.value.code == "signing"


def test_a_wrong_signature_is_refused_by_the_registry(registry: FakeRegistry, installation: str) -> None:
    app = keyless(registry, lambda message: b"\x01" * 256)
    with icr_app.Client(app) as client, pytest.raises(icr_app.AuthError):
        client.installation_token(installation)


def test_private_key_and_signer_both_or_neither_is_a_config_error(registry: FakeRegistry, key_file: Path) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    pem = registry.private_key_pem
    with pytest.raises(icr_app.ConfigError, match="not both") as both:
        icr_app.App(registry.app_id, pem, registry.base_url, signer=Kms(key_file))
    with pytest.raises(icr_app.ConfigError, match="signer=") as neither:
        icr_app.App(registry.app_id)
    with pytest.raises(icr_app.ConfigError, match="signer=") as none_given:
        icr_app.App(registry.app_id, None, registry.base_url)
    with pytest.raises(icr_app.ConfigError, match="only with signer=") as sealing:
        icr_app.App(registry.app_id, pem, sealing_secret=b"s" * 32)
    for error in (both, neither, none_given, sealing):
        assert error.value.code == "config"
        text = str(error.value)
        assert not any(line in text for line in pem.splitlines()[1:-1]), "never quotes the key"
    with pytest.raises(TypeError, match="signer must be a function"):
        icr_app.App(registry.app_id, signer=b"not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sealing_secret must be bytes"):
        icr_app.App(registry.app_id, signer=Kms(key_file), sealing_secret="text")  # type: ignore[arg-type]
    # Positional as before.
    app = icr_app.App(registry.app_id, pem, registry.base_url)
    assert app.signer is None and app.fingerprint


async def _async_signer(message: bytes) -> bytes:
    return b""


def test_a_coroutine_signer_with_the_blocking_client_is_a_config_error(registry: FakeRegistry) -> None:
    app = keyless(registry, _async_signer)
    with pytest.raises(icr_app.ConfigError, match="AsyncClient"):
        icr_app.Client(app)
    with pytest.raises(icr_app.ConfigError, match="GetJwt"):
        app.jwt()


def test_a_shared_store_needs_the_sealing_secret(registry: FakeRegistry, key_file: Path) -> None:
    url = "redis://127.0.0.1:1/0"  # nothing is dialled before the App refuses
    with pytest.raises(icr_app.ConfigError, match="sealing") as e:
        keyless(registry, Kms(key_file), redis_url=url)
    assert "sealing_secret=" in str(e.value) and "AppBuilder::sealing_secret" in str(e.value)
    app = keyless(registry, Kms(key_file))
    with pytest.raises(icr_app.ConfigError, match="sealing"):
        icr_app.Client(app, redis_url=url)
    assert app.redis_url is None
    with pytest.raises(icr_app.ConfigError, match="shorter than 32 bytes"):
        keyless(registry, Kms(key_file), sealing_secret=b"short", redis_url=url)


def test_processes_sharing_a_store_with_the_sealing_secret_mint_once(
    registry: FakeRegistry, key_file: Path, redis_url: str, installation: str
) -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    first, second = Kms(key_file), Kms(key_file)
    a = keyless(registry, first, sealing_secret=secret, redis_url=redis_url)
    b = keyless(registry, second, sealing_secret=secret, redis_url=redis_url)
    with icr_app.Client(a) as one, icr_app.Client(b) as two:
        token = one.installation_token(installation)
        assert two.installation_token(installation).token == token.token
    assert registry.mint_count(installation) == 1
    assert (first.calls, second.calls) == (1, 0)
    assert b.stats().shared_hits == 1


def test_driving_by_hand_answers_sign_with_the_apps_signer(registry: FakeRegistry, key_file: Path) -> None:
    app = keyless(registry, Kms(key_file))
    op = icr_app.GetJwt(app)
    step = op.poll()
    assert isinstance(step, icr_app.Sign) and step.message.count(b".") == 1
    # Another operation needing the JWT waits for that signature.
    other = icr_app.GetToken(app)
    assert isinstance(other.poll(), icr_app.Wait)
    signer = app.signer
    assert signer is not None
    signature = signer(step.message)
    assert isinstance(signature, bytes)
    op.handle_signature(step.id, signature=signature)
    done = op.poll()
    assert isinstance(done, icr_app.Done) and isinstance(done.value, str)
    assert app.jwt() == done.value
    other.abandon()


def test_an_app_with_its_key_does_its_jwt_in_one_poll(app: icr_app.App) -> None:
    step = icr_app.GetJwt(app).poll()
    assert isinstance(step, icr_app.Done) and step.value == app.jwt()
