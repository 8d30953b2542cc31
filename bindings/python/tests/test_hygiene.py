"""No repr, str, exception or log line shows a key, JWT, token or webhook secret."""

from __future__ import annotations

import logging
import pickle

import httpx
import pytest
import requests

import icr_app
from icr_app.testing import FakeRegistry


def secrets_of(registry: FakeRegistry, client: icr_app.Client, tokens: list[icr_app.Token]) -> list[str]:
    assert registry.private_key_pem is not None and registry.webhook_secret is not None
    key_lines = [line for line in registry.private_key_pem.splitlines() if not line.startswith("-----")]
    jwt = client.jwt()
    return [*key_lines, jwt, *jwt.split("."), *(t.token for t in tokens), *(t.token[4:] for t in tokens), registry.webhook_secret]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        if len(secret) >= 16:
            assert secret not in text, f"a secret leaked into: {text[:200]}"


def test_every_repr_and_str(registry: FakeRegistry, app: icr_app.App, client: icr_app.Client, installation: str) -> None:
    token = client.installation_token(installation)
    app_token = client.app_token()
    secrets = secrets_of(registry, client, [token, app_token])
    assert "[redacted]" in repr(token) and "[redacted]" in str(token)
    op = icr_app.GetToken(app, registry.installation_ids[1])
    step = op.poll()
    assert isinstance(step, icr_app.Send)
    assert step.authorization is not None and step.authorization.startswith("Bearer ")
    assert registry.webhook_secret is not None
    body, signature = registry.webhook_delivery(registry.webhook_secret, "installed", installation)
    event = icr_app.verify_webhook(registry.webhook_secret, body, signature)
    installation_obj = client.installation(installation)
    objects: list[object] = [
        app,
        app.policy,
        token,
        app_token,
        client,
        icr_app.AsyncClient(app),
        icr_app.InstallationAuth(client, installation),
        icr_app.RequestsAuth(client, installation),
        op,
        step,
        icr_app.Revoke(app, token),
        icr_app.RevokeAll(app),
        icr_app.SendAs(app, installation, "GET", "/projects"),
        installation_obj,
        installation_obj.organization,
        event,
        registry,
    ]
    secrets.append(step.authorization[len("Bearer ") :])
    for obj in objects:
        assert_clean(repr(obj), secrets)
        assert_clean(str(obj), secrets)
    op.abandon()
    # A step's repr shows where it goes, not its headers.
    assert "authorization" not in repr(step).lower()


def test_secrets_are_not_picklable(app: icr_app.App, client: icr_app.Client, installation: str) -> None:
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(app)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(client.installation_token(installation))


def test_every_exception(registry: FakeRegistry, app: icr_app.App, client: icr_app.Client, installation: str) -> None:
    token = client.installation_token(installation)
    secrets = secrets_of(registry, client, [token])
    errors: list[BaseException] = []

    def capture(call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except icr_app.Error as e:
            errors.append(e)

    assert registry.private_key_pem is not None and registry.webhook_secret is not None
    other = registry.private_key_pem.replace("A", "B", 3)
    capture(lambda: icr_app.App("x", other))
    capture(lambda: icr_app.App("x", registry.private_key_pem[:400]))
    capture(lambda: icr_app.App("x", token.token))
    capture(lambda: icr_app.App("x", client.jwt()))
    capture(lambda: client.installation("missing"))
    capture(lambda: client.get_json(registry.installation_ids[1], f"/organizations/{registry.organization_id(registry.installation_ids[1])}/inventory"))
    capture(lambda: icr_app.verify_webhook(registry.webhook_secret, b"{}", "sha256=" + "0" * 64))
    capture(lambda: client.get_json(installation, "/projects?token=" + token.token))
    registry.revoke_all_tokens()
    capture(lambda: client.revoke(token))
    wrong = icr_app.App("d23967cc-dd16-452b-8af4-869965745978", icr_app.testing.FakeRegistry.DEMO_PRIVATE_KEY_PEM, "http://registry.invalid")
    capture(lambda: icr_app.Client(wrong).installation_token("i"))
    assert len(errors) >= 9
    for e in errors:
        assert_clean(str(e), secrets)
        assert_clean(repr(e), secrets)
        assert_clean(repr(e.args), secrets)


def test_log_lines(registry: FakeRegistry, client: icr_app.Client, installation: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    registry.inject_status(503, path_prefix="/app/installations/")
    token = client.installation_token(installation)
    with httpx.Client(base_url=registry.base_url, auth=icr_app.InstallationAuth(client, installation)) as http:
        registry.revoke_all_tokens()
        http.get("/projects")
    requests.get(registry.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation))
    client.revoke_all()
    secrets = secrets_of(registry, client, [token])
    ours = [r for r in caplog.records if r.name == "icr_app"]
    # The core's retry warning reaches Python's logging, and the driver logs each exchange.
    assert any(r.levelno == logging.WARNING and "retrying" in r.getMessage() for r in ours), [r.getMessage() for r in ours]
    assert any("POST /app/installations/" in r.getMessage() for r in ours)
    for record in caplog.records:
        assert_clean(record.getMessage(), secrets)


def test_a_redis_password_in_the_users_place_is_never_shown(app: icr_app.App) -> None:
    """``redis://PASSWORD@host``: a password with no user name before it (the form redis-cli
    and many hosted Redis pages give) is shown as ``***`` like any other."""
    assert app.redis_url is None
    shared = icr_app.App(
        "app-1", icr_app.testing.FakeRegistry.DEMO_PRIVATE_KEY_PEM, redis_url="redis://s3cret@127.0.0.1:1/"
    )
    assert shared.redis_url is not None and "s3cret" not in shared.redis_url
    assert "127.0.0.1:1" in shared.redis_url
    with pytest.raises(icr_app.ConfigError) as error:
        icr_app.Client(shared, redis_url="redis://0therpw@127.0.0.1:2/")
    assert "s3cret" not in str(error.value) and "0therpw" not in str(error.value)
    assert "s3cret" not in repr(shared)
