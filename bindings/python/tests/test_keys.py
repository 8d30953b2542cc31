"""Every key format the core accepts, and every bad key it refuses (core/tests/fixtures/keys)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

import icr_app
from icr_app.testing import FakeRegistry

from conftest import CORE_FIXTURES

KEYS = CORE_FIXTURES / "keys"
FINGERPRINT = (KEYS / "rsa2048.fingerprint").read_text().strip()

TEXT_FORMS = ["rsa2048-pkcs1.pem", "rsa2048-pkcs8.pem", "rsa2048-pkcs1-crlf.pem", "rsa2048-env.txt", "rsa2048-cert-and-key.pem"]
DER_FORMS = ["rsa2048-pkcs1.der", "rsa2048-pkcs8.der"]


@pytest.mark.parametrize("name", TEXT_FORMS)
def test_text_forms_as_str_and_bytes(name: str) -> None:
    text = (KEYS / name).read_text()
    assert icr_app.App("app-1", text).fingerprint == FINGERPRINT
    assert icr_app.App("app-1", text.encode()).fingerprint == FINGERPRINT


@pytest.mark.parametrize("name", DER_FORMS)
def test_der_forms_as_bytes(name: str) -> None:
    assert icr_app.App("app-1", (KEYS / name).read_bytes()).fingerprint == FINGERPRINT


def test_env_escaped_pem() -> None:
    pem = (KEYS / "rsa2048-pkcs1.pem").read_text()
    assert icr_app.App("app-1", pem.replace("\n", "\\n")).fingerprint == FINGERPRINT
    assert icr_app.App("app-1", f'"{pem}"').fingerprint == FINGERPRINT


def test_4096_bit_key() -> None:
    app = icr_app.App("app-1", (KEYS / "rsa4096-pkcs8.pem").read_text())
    assert app.fingerprint == (KEYS / "rsa4096.fingerprint").read_text().strip()
    assert app.jwt().count(".") == 2


@pytest.mark.parametrize("name", ["rsa2048-pkcs1.pem", "rsa2048-pkcs8.pem", "rsa4096-pkcs8.pem"])
def test_every_format_mints_against_the_registry(registry: FakeRegistry, name: str) -> None:
    pem = (KEYS / name).read_text()
    registry.register_app_with_private_key("keys-app", pem)
    installation = registry.add_installation("keys-app", "Key Org", [("organization_info", "VIEW")])
    with icr_app.Client(icr_app.App("keys-app", pem, registry.base_url)) as client:
        assert registry.token_is_valid(client.installation_token(installation))


BAD = {
    "rsa2048-encrypted-pkcs8.pem": "encrypted with a passphrase",
    "rsa2048-encrypted-traditional.pem": "encrypted with a passphrase",
    "ec-p256-sec1.pem": "elliptic-curve",
    "ec-p256-pkcs8.pem": r"EC \(P-256\)",
    "ed25519-pkcs8.pem": "Ed25519",
    "openssh-ed25519": "OpenSSH",
    "openssh-rsa": "OpenSSH",
    "rsa2048-public.pem": "public key",
    "rsa2048-public-pkcs1.pem": "public key",
    "openssh-rsa.pub": "public key",
    "rsa2048-cert.pem": "certificate",
    "rsa2048-truncated.pem": "truncated",
    "rsa2048-bad-base64.pem": "base64",
    "rsa1024-pkcs1.pem": "2048",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_keys(name: str) -> None:
    data = (KEYS / name).read_bytes()
    for key in (data, data.decode()):
        with pytest.raises(icr_app.InvalidKeyError, match=BAD[name]) as error:
            icr_app.App("app-1", key)
        message = str(error.value)
        assert message.startswith("private key: ")
        assert error.value.status is None
        # No key material in the message: no line of the file's body appears in it.
        for line in data.decode().splitlines():
            if len(line) > 20 and not line.startswith("-----"):
                assert line not in message


def test_public_der_and_other_inputs() -> None:
    with pytest.raises(icr_app.InvalidKeyError, match="public key"):
        icr_app.App("app-1", (KEYS / "rsa2048-public.der").read_bytes())
    for nothing in ("", b"", "   \n"):
        with pytest.raises(icr_app.InvalidKeyError, match="empty"):
            icr_app.App("app-1", nothing)
    with pytest.raises(icr_app.InvalidKeyError, match="no such file"):
        icr_app.App("app-1", "/home/me/icr_private_key.pem")
    with pytest.raises(icr_app.InvalidKeyError, match="access token"):
        icr_app.App("app-1", "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b")
    with pytest.raises(TypeError, match="path of the key file"):
        icr_app.App("app-1", 42)  # type: ignore[arg-type]
    assert issubclass(icr_app.InvalidKeyError, icr_app.Error)


def test_a_key_registered_to_no_app_is_refused(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None
    other = (KEYS / "rsa2048-pkcs8.pem").read_text()
    with icr_app.Client(icr_app.App(registry.app_id, other, registry.base_url)) as client:
        with pytest.raises(icr_app.AuthError, match="refused the app JWT") as error:
            client.installation_token(installation)
    assert error.value.status == 401


@pytest.mark.parametrize("name", TEXT_FORMS + DER_FORMS)
def test_the_path_of_a_key_file(name: str) -> None:
    """The advice every key error gives (the path of the PEM file) is one Python takes."""
    path = KEYS / name
    assert icr_app.App("app-1", path).fingerprint == FINGERPRINT
    assert icr_app.App("app-1", str(path)).fingerprint == FINGERPRINT
    assert icr_app.App("app-1", f"  {path}\n").fingerprint == FINGERPRINT


def test_a_relative_path_and_a_base64_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = tmp_path / "key.b64"
    encoded.write_bytes(base64.b64encode((KEYS / "rsa2048-pkcs8.pem").read_bytes()))
    monkeypatch.chdir(tmp_path)
    assert icr_app.App("app-1", "key.b64").fingerprint == FINGERPRINT

    class KeyPath(os.PathLike[str]):
        def __fspath__(self) -> str:
            return str(encoded)

    assert icr_app.App("app-1", KeyPath()).fingerprint == FINGERPRINT


def test_a_path_that_names_no_key_file_is_never_quoted(tmp_path: Path) -> None:
    missing = "/srv/billing-app/secret-place/prod-key.pem"
    for given in (missing, Path(missing)):
        with pytest.raises(icr_app.InvalidKeyError) as error:
            icr_app.App("app-1", given)
        message = str(error.value)
        assert message.startswith("private key: ") and "private_key" in message
        assert "no such file" in message or "names no file" in message
        assert "billing-app" not in message and "prod-key" not in message
    for directory in (str(tmp_path), tmp_path):
        with pytest.raises(icr_app.InvalidKeyError, match="not a file") as error:
            icr_app.App("app-1", directory)
        assert tmp_path.name not in str(error.value)
    with pytest.raises(icr_app.InvalidKeyError, match="is not expanded"):
        icr_app.App("app-1", "~/nowhere-to-be-found/icr.pem")
    with pytest.raises(icr_app.InvalidKeyError, match="relative path"):
        icr_app.App("app-1", "nowhere-to-be-found/icr.pem")


def test_a_file_that_holds_no_key(tmp_path: Path) -> None:
    secret = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b"
    holder = tmp_path / "not-a-key.txt"
    holder.write_text(secret)
    for given in (holder, str(holder)):
        with pytest.raises(icr_app.InvalidKeyError, match="holds no usable key") as error:
            icr_app.App("app-1", given)
        assert "access token" in str(error.value)
        assert secret[4:20] not in str(error.value) and "not-a-key" not in str(error.value)
    with pytest.raises(icr_app.InvalidKeyError, match="encrypted with a passphrase"):
        icr_app.App("app-1", KEYS / "rsa2048-encrypted-pkcs8.pem")
    big = tmp_path / "big.pem"
    big.write_bytes(b"A" * (2 * 1024 * 1024))
    with pytest.raises(icr_app.InvalidKeyError, match="too large"):
        icr_app.App("app-1", big)
    # Text that is a key form stays one: a token is named as such, whatever the directory holds.
    with pytest.raises(icr_app.InvalidKeyError, match="access token"):
        icr_app.App("app-1", secret)
