"""The operation API itself, driven by hand: what a driver of another runtime would do."""

from __future__ import annotations

import os
import sys
import threading
import time

import httpx
import pytest

import icr_app
from icr_app.testing import FakeRegistry


def drive_by_hand(op: icr_app.Operation) -> object:
    with httpx.Client() as http:
        while True:
            step = op.poll(time.time())
            if isinstance(step, icr_app.Done):
                return step.value
            if isinstance(step, icr_app.Send):
                response = http.request(step.method, step.url, headers=step.headers, content=step.body or None)
                op.handle_response(step.id, response.status_code, response.headers.raw, response.content, time.time())
            elif isinstance(step, icr_app.Store):
                op.handle_store(step.id, step.run(), time.time())
            else:
                time.sleep(max(0.0, step.until - time.time()))


def test_get_token_by_hand(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    op = icr_app.GetToken(app, installation, min_life=120)
    first = op.poll()
    assert isinstance(first, icr_app.Send)
    assert first.method == "POST"
    assert first.url == f"{registry.base_url}/app/installations/{installation}/accessTokens"
    assert not first.target
    assert app.policy.check(first) == "direct"
    assert first.header("x-icr-api-version") == "2023-06-16"
    response = httpx.post(first.url, headers=first.headers, content=first.body)
    op.handle_response(first.id, response.status_code, response.headers.raw, response.content)
    done = op.poll()
    assert isinstance(done, icr_app.Done) and isinstance(done.value, icr_app.Token)
    assert op.done
    op.abandon()  # after Done: nothing
    # Now cached: another GetToken is done at once.
    cached = icr_app.GetToken(app, installation).poll()
    assert isinstance(cached, icr_app.Done) and cached.value == done.value


def test_every_operation_by_hand(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    installations = drive_by_hand(icr_app.ListInstallations(app, limit=2))
    assert isinstance(installations, list) and len(installations) == 3
    one = drive_by_hand(icr_app.CallInstallation(app, installation))
    assert isinstance(one, icr_app.Installation)
    raw = drive_by_hand(icr_app.SendAs(app, installation, "GET", "/projects"))
    assert isinstance(raw, tuple)
    status, headers, body = raw
    assert status == 200 and b"projects" in body and ("content-type", "application/json; charset=utf-8") in headers
    assert "projects" in drive_by_hand(icr_app.SendAs(app, installation, "GET", "/projects", json=True))  # type: ignore[operator]
    token = drive_by_hand(icr_app.GetToken(app, None))
    assert isinstance(token, icr_app.Token)
    assert drive_by_hand(icr_app.Revoke(app, token)) is None
    assert registry.token_status(token) == "revoked"
    assert drive_by_hand(icr_app.RevokeAll(app)) == 1


def test_a_second_caller_waits_and_abandon_releases(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    first = icr_app.GetToken(app, installation)
    assert isinstance(first.poll(), icr_app.Send)
    second = icr_app.GetToken(app, installation)
    assert isinstance(second.poll(), icr_app.Wait), "one mint per installation"
    first.abandon()
    assert isinstance(second.poll(), icr_app.Send), "the abandoned mint is released at once"
    second.abandon()


def test_failures_are_reported(registry: FakeRegistry, installation: str) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, retry_attempts=2)
    op = icr_app.GetToken(app, installation)
    step = op.poll()
    assert isinstance(step, icr_app.Send)
    op.handle_failure(step.id, "connection_lost", "reset by peer")
    retry = op.poll()
    assert isinstance(retry, icr_app.Sleep) and retry.until > time.time()
    assert isinstance(op.poll(retry.until + 0.01), icr_app.Send)


def test_the_policy_refuses_what_rust_refuses(registry: FakeRegistry) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, "http://registry.invalid", retry_attempts=1)
    op = icr_app.GetToken(app, "i-1")
    step = op.poll()
    assert isinstance(step, icr_app.Send)
    with pytest.raises(icr_app.TransportError) as refused:
        app.policy.check(step)
    assert refused.value.kind == "refused"
    op.handle_failure(step.id, refused.value.kind, refused.value.detail)
    with pytest.raises(icr_app.TransportError, match="nothing was sent"):
        op.poll()
    insecure = icr_app.App(registry.app_id, registry.private_key_pem, "http://registry.invalid", allow_insecure_http=True)
    step = icr_app.GetToken(insecure, "i-1").poll()
    assert isinstance(step, icr_app.Send) and insecure.policy.check(step) == "proxy"
    secure = icr_app.App(registry.app_id, registry.private_key_pem, "https://api.example.org")
    step = icr_app.GetToken(secure, "i-1").poll()
    assert isinstance(step, icr_app.Send) and secure.policy.check(step) == "proxy"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_client_made_before_fork_works_in_the_child(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    parent_token = client.installation_token(installation)
    # A mint in flight in another thread when the process forks: the child must not wait for it.
    slow = registry.installation_ids[1]
    registry.inject_delay(2.0, path_prefix=f"/app/installations/{slow}/")
    thread = threading.Thread(target=client.installation_token, args=(slow,))
    thread.start()
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            started = time.monotonic()
            token = client.installation_token(slow)
            quick = time.monotonic() - started < 1.9 or registry.mint_count(slow) >= 1
            fresh = client.installation_token(installation)
            code = 0 if quick and token.token.startswith("crs_") and fresh.token.startswith("crs_") else 2
        except BaseException as e:
            sys.stderr.write(f"child failed: {e!r}\n")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    thread.join()
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent is untouched: its cache still serves.
    assert client.installation_token(installation) == parent_token


def test_refresher_renews_ahead_of_expiry(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    registry.set_token_lifetime(400)  # refresh falls due at half-life at the latest
    first = drive_by_hand(icr_app.GetToken(app, installation))
    assert isinstance(first, icr_app.Token)
    refresher = icr_app.Refresher(app)
    # Nothing due yet: it waits.
    assert isinstance(refresher.poll(), icr_app.Wait)
    # 250 s later (half-life passed, still usable): the refresh is sent while the old token serves.
    later = time.time() + 250
    served = icr_app.GetToken(app, installation).poll(later)
    assert isinstance(served, icr_app.Done) and served.value == first
    step = refresher.poll(later)
    assert isinstance(step, icr_app.Send) and step.url.endswith("/accessTokens")
    response = httpx.post(step.url, headers=step.headers, content=step.body)
    refresher.handle_response(step.id, response.status_code, response.headers.raw, response.content, later)
    renewed = icr_app.GetToken(app, installation).poll(later)
    assert isinstance(renewed, icr_app.Done) and renewed.value != first
    refresher.abandon()
    assert registry.mint_count(installation) == 2
