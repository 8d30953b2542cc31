"""verify_webhook against the vectors shared with the Rust tests (core/tests/fixtures/webhooks)
and the fake registry's deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

import icr_app
from icr_app.testing import FakeRegistry

from conftest import CORE_FIXTURES

HOOKS = CORE_FIXTURES / "webhooks"
SECRET = (HOOKS / "secret.txt").read_text()
VECTORS = ["installed-docs-shape", "warehouse-transaction-real-shape"]


@pytest.mark.parametrize("name", VECTORS)
def test_shared_vectors(name: str) -> None:
    body = (HOOKS / f"{name}.body.json").read_bytes()
    signature = (HOOKS / f"{name}.signature").read_text()
    signed_data = (HOOKS / f"{name}.signed-data.txt").read_text()
    # The vector checks out with Python's hmac too.
    assert signature == "sha256=" + hmac.new(SECRET.encode(), signed_data.encode(), hashlib.sha256).hexdigest()
    event = icr_app.verify_webhook(SECRET, body, signature)
    assert event.data == json.loads(base64.b64decode(signed_data))
    assert event.kind == event.data["event"]
    assert event.installation_id == event.data["installation"]["id"]
    assert event.installation is not None and event.installation.id == event.installation_id
    assert icr_app.verify_webhook(SECRET.encode(), body, signature.encode()).kind == event.kind
    with pytest.raises(icr_app.WebhookError, match="does not match") as error:
        icr_app.verify_webhook("another-secret", body, signature)
    assert SECRET not in str(error.value)


def test_docs_shape_fields() -> None:
    body = (HOOKS / "installed-docs-shape.body.json").read_bytes()
    event = icr_app.verify_webhook(SECRET, body, (HOOKS / "installed-docs-shape.signature").read_text())
    assert event.kind == "installed"
    assert event.installation_id == "123"
    assert event.installation is not None and event.installation.permissions["organization_inventory"] == "REQUEST"
    assert event.installation.organization is not None and event.installation.organization.name == "Organization 1"
    assert event.data["sender"]["fullName"] == "John Doe"


def test_real_shape_fields() -> None:
    name = "warehouse-transaction-real-shape"
    event = icr_app.verify_webhook(SECRET, (HOOKS / f"{name}.body.json").read_bytes(), (HOOKS / f"{name}.signature").read_text())
    assert event.kind == "warehouseTransaction"
    assert event.data["transaction"]["type"] == "transfer_retire"
    assert event.installation is not None and event.installation.organization is not None
    assert event.installation.organization.name == "Bosques del Sur S.A."


def test_refusals() -> None:
    name = VECTORS[0]
    body = (HOOKS / f"{name}.body.json").read_bytes()
    signature = (HOOKS / f"{name}.signature").read_text()
    with pytest.raises(icr_app.WebhookError, match="no x-icr-signature-256 header"):
        icr_app.verify_webhook(SECRET, body, None)
    with pytest.raises(icr_app.WebhookError, match="sha256="):
        icr_app.verify_webhook(SECRET, body, signature.removeprefix("sha256="))
    with pytest.raises(icr_app.WebhookError):
        icr_app.verify_webhook(SECRET, body, "sha256=" + "0" * 63)
    tampered = json.loads(body)
    signed = json.loads(base64.b64decode(tampered["signedData"]))
    signed["event"] = "uninstalled"
    tampered["signedData"] = base64.b64encode(json.dumps(signed).encode()).decode()
    with pytest.raises(icr_app.WebhookError, match="does not match"):
        icr_app.verify_webhook(SECRET, json.dumps(tampered).encode(), signature)
    with pytest.raises(icr_app.WebhookError):
        icr_app.verify_webhook(SECRET, b"not json", signature)
    with pytest.raises(icr_app.WebhookError):
        icr_app.verify_webhook("  ", body, signature)
    assert issubclass(icr_app.WebhookError, icr_app.Error)


def test_fake_registry_deliveries(registry: FakeRegistry, installation: str) -> None:
    assert registry.webhook_secret is not None
    for kind in ["installed", "uninstalled", "newPermissionsAccepted"]:
        body, signature = registry.webhook_delivery(registry.webhook_secret, kind, installation)
        event = icr_app.verify_webhook(registry.webhook_secret, body, signature)
        assert event.kind == kind
        assert event.installation_id == installation
