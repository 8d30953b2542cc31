"""icr-app (the Rust core driven by httpx) against the same work written by hand in Python
(PyJWT + cryptography to sign, a dict as the cache, httpx to mint), measured in one run.

    bash bindings/python/benchmarks/run.sh          # builds the extension --release first
    python benchmarks/bench.py [--quick]            # in a venv that has icr-app, pyjwt, cryptography

Everything runs against the fake registry (icr_app.testing.FakeRegistry) over loopback HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import statistics
import sys
import threading
import time
import timeit
from datetime import datetime, timezone
from typing import Any, Callable

import httpx
import jwt as pyjwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import icr_app
from icr_app.testing import FakeRegistry

QUICK = "--quick" in sys.argv


def per_call(fn: Callable[[], Any], number: int, repeat: int = 7) -> float:
    """Best-of-`repeat` mean time of one call, in seconds."""
    gc.collect()
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return min(times) / number


def fmt(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e3:.2f} ms"


class HandWritten:
    """What a Python developer writes by hand: PyJWT + cryptography, a dict cache, httpx."""

    def __init__(self, app_id: str, pem: str, base_url: str) -> None:
        self.app_id = app_id
        self.key = load_pem_private_key(pem.encode(), password=None)
        self.base_url = base_url
        self.cache: dict[str, tuple[str, float]] = {}
        self.http = httpx.Client()
        self.jwt_cache: tuple[str, float] | None = None

    def sign(self) -> str:
        now = int(time.time())
        return pyjwt.encode({"iat": now - 60, "exp": now + 540, "iss": self.app_id}, self.key, algorithm="RS256")

    def jwt(self) -> str:
        cached = self.jwt_cache
        if cached is not None and cached[1] - time.time() > 60:
            return cached[0]
        token = self.sign()
        self.jwt_cache = (token, time.time() + 540)
        return token

    def mint(self, installation_id: str) -> tuple[str, float]:
        response = self.http.post(
            f"{self.base_url}/app/installations/{installation_id}/accessTokens",
            headers={"Authorization": f"Bearer {self.sign()}", "x-icr-api-version": "2023-06-16", "accept": "application/json"},
            content=b"{}",
        )
        response.raise_for_status()
        body = response.json()
        expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00")).timestamp()
        return body["token"], expires

    def installation_token(self, installation_id: str) -> str:
        entry = self.cache.get(installation_id)
        if entry is not None and entry[1] - time.time() > 60:
            return entry[0]
        entry = self.mint(installation_id)
        self.cache[installation_id] = entry
        return entry[0]


async def hand_written_tasks(hand: HandWritten, base_url: str, installation_id: str, tasks: int) -> None:
    """500 tasks, the dict cache as written by hand (a check, then a mint on a miss)."""
    cache: dict[str, tuple[str, float]] = {}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as http:

        async def one() -> str:
            entry = cache.get(installation_id)
            if entry is not None and entry[1] - time.time() > 60:
                return entry[0]
            response = await http.post(
                f"{base_url}/app/installations/{installation_id}/accessTokens",
                headers={"Authorization": f"Bearer {hand.sign()}", "x-icr-api-version": "2023-06-16"},
                content=b"{}",
            )
            body = response.json()
            cache[installation_id] = (body["token"], time.time() + 7000)
            return str(body["token"])

        await asyncio.gather(*(one() for _ in range(tasks)))


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    with FakeRegistry.demo() as registry:
        assert registry.app_id is not None and registry.private_key_pem is not None
        app_id, pem, base = registry.app_id, registry.private_key_pem, registry.base_url
        n_cold = 20 if QUICK else 200
        cold = [registry.add_installation(app_id, f"Org {i}", [("organization_info", "VIEW")]) for i in range(3 * n_cold + 3)]
        installation = registry.installation_ids[0]

        app = icr_app.App(app_id, pem, base)
        client = icr_app.Client(app)
        hand = HandWritten(app_id, pem, base)

        # 1. A cached installation token.
        client.installation_token(installation)
        hand.installation_token(installation)
        number = 20_000 if QUICK else 200_000
        ours = per_call(lambda: client.installation_token(installation), number)
        theirs = per_call(lambda: hand.installation_token(installation), number)
        entry = hand.cache[installation]
        check = per_call(lambda: entry[1] - time.time() > 60, number)
        rows.append(("cached installation_token", fmt(ours), fmt(theirs), f"{theirs / ours:.2f}x"))
        rows.append(("  (the dict version's expiry check alone)", "", fmt(check), ""))

        # 2. The JWT: cached, and signed from cold (key loaded, then signed).
        ours = per_call(app.jwt, number)
        theirs = per_call(hand.jwt, number)
        rows.append(("app JWT, cached", fmt(ours), fmt(theirs), f"{theirs / ours:.2f}x"))
        n_sign = 50 if QUICK else 300
        ours = per_call(lambda: icr_app.App(app_id, pem).jwt(), n_sign, repeat=3)
        theirs = per_call(
            lambda: pyjwt.encode({"iat": 0, "exp": 600, "iss": app_id}, load_pem_private_key(pem.encode(), None), algorithm="RS256"),
            n_sign,
            repeat=3,
        )
        rows.append(("app JWT, key loaded + signed", fmt(ours), fmt(theirs), f"{theirs / ours:.2f}x"))
        theirs = per_call(hand.sign, n_sign, repeat=3)
        rows.append(("  (PyJWT sign alone, key loaded once)", "", fmt(theirs), ""))

        # 3. A cold mint over loopback: one new installation per call.
        it = iter(cold)

        def ours_mint() -> None:
            client.installation_token(next(it))

        def theirs_mint() -> None:
            hand.installation_token(next(it))

        presigned = hand.sign()
        http = httpx.Client()

        def bare_post() -> None:
            r = http.post(
                f"{base}/app/installations/{next(it)}/accessTokens",
                headers={"Authorization": f"Bearer {presigned}", "x-icr-api-version": "2023-06-16"},
                content=b"{}",
            )
            r.json()

        for fn in (ours_mint, theirs_mint, bare_post):  # warm the connections
            fn()
        ours = per_call(ours_mint, n_cold, repeat=1)
        theirs = per_call(theirs_mint, n_cold, repeat=1)
        bare = per_call(bare_post, n_cold, repeat=1)
        rows.append(("cold mint over loopback", fmt(ours), fmt(theirs), f"{theirs / ours:.2f}x"))
        rows.append(("  (bare httpx POST, pre-signed JWT)", "", fmt(bare), ""))
        rows.append(("  binding's share over the bare POST", fmt(ours - bare), fmt(theirs - bare), ""))
        http.close()

        # 4. 500 concurrent tasks on a cold installation.
        tasks = 500
        target = registry.add_installation(app_id, "Busy Org", [("organization_info", "VIEW")])

        async def ours_tasks() -> float:
            async with icr_app.AsyncClient(icr_app.App(app_id, pem, base)) as aclient:
                started = time.perf_counter()
                await asyncio.gather(*(aclient.installation_token(target) for _ in range(tasks)))
                return time.perf_counter() - started

        took = asyncio.run(ours_tasks())
        ours_mints = registry.mint_count(target)
        target2 = registry.add_installation(app_id, "Busy Org 2", [("organization_info", "VIEW")])
        started = time.perf_counter()
        asyncio.run(hand_written_tasks(hand, base, target2, tasks))
        took_hand = time.perf_counter() - started
        rows.append((f"{tasks} tasks, one cold installation: time", fmt(took), fmt(took_hand), f"{took_hand / took:.2f}x"))
        rows.append((f"{tasks} tasks, one cold installation: mints", str(ours_mints), str(registry.mint_count(target2)), ""))

        # 64 threads on a cold installation.
        target3 = registry.add_installation(app_id, "Busy Org 3", [("organization_info", "VIEW")])
        barrier = threading.Barrier(64)

        def ask() -> None:
            barrier.wait()
            client.installation_token(target3)

        threads = [threading.Thread(target=ask) for _ in range(64)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows.append(("64 threads, one cold installation: time", fmt(time.perf_counter() - started), "", ""))
        rows.append(("64 threads, one cold installation: mints", str(registry.mint_count(target3)), "", ""))
        client.close()

    width = max(len(r[0]) for r in rows)
    print(f"Python {platform.python_version()} on {platform.machine()}, icr-app {icr_app.__version__}, httpx {httpx.__version__}, PyJWT {pyjwt.__version__}")
    print(f"{'':<{width}}  {'icr-app':>12}  {'by hand':>12}  {'ratio':>7}")
    for name, a, b, c in rows:
        print(f"{name:<{width}}  {a:>12}  {b:>12}  {c:>7}")
    _ = statistics  # (kept for ad-hoc analysis)


if __name__ == "__main__":
    main()
