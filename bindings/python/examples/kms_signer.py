"""A key kept outside this process: ``App(app_id, signer=...)`` with a signer that calls out of
process, as a KMS or HSM client does. Here the "KMS" is the ``openssl`` command, signing with the
key file (``openssl dgst -sha256 -sign KEY``: RS256 is RSASSA-PKCS1-v1_5 over SHA-256); with AWS
KMS the function would call ``kms.sign(KeyId=..., Message=message, MessageType="RAW",
SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]``, with Google Cloud KMS
``asymmetric_sign`` on the SHA-256 digest, with an HSM its PKCS#11 ``CKM_SHA256_RSA_PKCS``.

The signer is called once per app JWT (about every nine minutes), once however many threads or
tasks need it; the others wait. What it raises is every waiting caller's ``icr_app.Error`` with
``.code == "signing"``. ``AsyncClient`` takes a coroutine function too (below), and runs a plain
one in a worker thread. A shared store (``redis_url``) would also need ``sealing_secret=``.

Settings as for the other examples (``ICR_APP_ID``, ``ICR_PRIVATE_KEY`` the path of the key
file, which only the signer reads, ``ICR_INSTALLATION_ID``, ``ICR_BASE_URL``); with no
``ICR_APP_ID`` set, it starts a ``FakeRegistry`` in this process and runs against it:

    python examples/kms_signer.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import icr_app
from icr_app.testing import FakeRegistry


class OpensslSigner:
    """Signs out of process: ``openssl dgst -sha256 -sign KEY_FILE`` with the bytes on stdin."""

    def __init__(self, key_file: str) -> None:
        self.key_file = key_file
        self.calls = 0

    def __call__(self, message: bytes) -> bytes:
        self.calls += 1
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key_file], input=message, capture_output=True, timeout=10
        )
        if done.returncode != 0:
            # The message is the signer's: it goes into the callers' icr_app.Error as it is.
            raise RuntimeError(f"openssl exited with status {done.returncode}")
        return done.stdout

    async def sign_async(self, message: bytes) -> bytes:
        """The same, for AsyncClient, as a coroutine function."""
        self.calls += 1
        process = await asyncio.create_subprocess_exec(
            "openssl",
            "dgst",
            "-sha256",
            "-sign",
            self.key_file,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        signature, _ = await process.communicate(message)
        if process.returncode != 0:
            raise RuntimeError(f"openssl exited with status {process.returncode}")
        return signature


def main(app_id: str, key_file: str, base_url: str | None, installation_id: str) -> None:
    signer = OpensslSigner(key_file)
    app = icr_app.App(app_id, base_url=base_url, signer=signer)
    print(app)  # no fingerprint: the key is not in this process
    with icr_app.Client(app) as client:
        token = client.installation_token(installation_id)
        print(token, "after", signer.calls, "signature(s)")
        print(len(client.installations()), "installation(s), still", signer.calls, "signature(s)")

    async def tasks() -> None:
        signer_async = OpensslSigner(key_file)
        app_async = icr_app.App(app_id, base_url=base_url, signer=signer_async.sign_async)
        async with icr_app.AsyncClient(app_async) as client:
            tokens = await asyncio.gather(*(client.installation_token(installation_id) for _ in range(50)))
            print(len(tokens), "tasks, one token:", len({t.token for t in tokens}) == 1, "-", signer_async.calls, "signature(s)")

    asyncio.run(tasks())


def setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set (see this example's docstring)")
    return value


if __name__ == "__main__":
    if os.environ.get("ICR_APP_ID"):
        main(
            setting("ICR_APP_ID"),
            setting("ICR_PRIVATE_KEY"),
            os.environ.get("ICR_BASE_URL") or None,
            setting("ICR_INSTALLATION_ID"),
        )
    else:
        print("ICR_APP_ID is not set: running against a FakeRegistry in this process", file=sys.stderr)
        with FakeRegistry.demo() as registry, tempfile.TemporaryDirectory() as kms:
            assert registry.app_id is not None and registry.private_key_pem is not None  # demo() sets both
            key = Path(kms) / "key.pem"  # the "KMS": a key file only openssl reads
            key.write_text(registry.private_key_pem)
            key.chmod(0o600)
            main(registry.app_id, str(key), registry.base_url, registry.installation_ids[0])
