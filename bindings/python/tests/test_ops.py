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
            elif isinstance(step, icr_app.Sign):  # pragma: no cover - only for an App made with signer=
                raise AssertionError("an App with its private key signs in the core")
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
    wait = second.poll()
    assert isinstance(wait, icr_app.Wait), "one mint per installation"
    assert isinstance(wait.change, int) and f"change={wait.change}" in repr(wait)
    third = icr_app.GetToken(app, installation)
    again = third.poll()
    assert isinstance(again, icr_app.Wait) and again.change == wait.change, "nothing was reported meanwhile"
    first.abandon()
    assert isinstance(second.poll(), icr_app.Send), "the abandoned mint is released at once"
    later = third.poll()
    assert isinstance(later, icr_app.Wait) and later.change != wait.change, "the abandon moved the App's counter"
    second.abandon()
    third.abandon()


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


def test_a_page_of_installations(registry: FakeRegistry, app: icr_app.App) -> None:
    op = icr_app.CallInstallationsPage(app, limit=2, page=0)
    step = op.poll()
    assert isinstance(step, icr_app.Send)
    assert step.purpose == "call" and not step.target
    assert step.method == "GET" and "/app/installations?" in step.url and "limit=2" in step.url and "page=0" in step.url
    response = httpx.get(step.url, headers=step.headers)
    op.handle_response(step.id, response.status_code, response.headers.raw, response.content)
    done = op.poll()
    assert isinstance(done, icr_app.Done)
    first = done.value
    assert isinstance(first, icr_app.InstallationsPage)
    assert len(first.installations) == 2 and all(isinstance(i, icr_app.Installation) for i in first.installations)
    assert first.total == 3 and first.current_page == 0 and first.next_page == 1
    assert first.has_more(2, 2)
    assert first.raw["installations"][0]["id"] == first.installations[0].id
    assert "InstallationsPage(installations=2" in repr(first)
    second = drive_by_hand(icr_app.CallInstallationsPage(app, limit=2, page=1))
    assert isinstance(second, icr_app.InstallationsPage)
    assert len(second.installations) == 1 and second.next_page is None and not second.has_more(2, 3)
    ids = [i.id for i in first.installations + second.installations]
    assert sorted(ids) == sorted(registry.installation_ids)
    # The default page: every installation at once.
    whole = drive_by_hand(icr_app.CallInstallationsPage(app))
    assert isinstance(whole, icr_app.InstallationsPage) and len(whole.installations) == 3


def sends_of(op: icr_app.Operation) -> list[tuple[str, bool]]:
    """Drives ``op`` by hand to the end; every ``Send``'s purpose and target, in order."""
    seen: list[tuple[str, bool]] = []
    with httpx.Client() as http:
        while True:
            step = op.poll()
            if isinstance(step, icr_app.Done):
                return seen
            assert isinstance(step, icr_app.Send), step
            seen.append((step.purpose, step.target))
            assert f"purpose={step.purpose!r}".replace("'", '"') in repr(step)
            response = http.request(step.method, step.url, headers=step.headers, content=step.body or None)
            op.handle_response(step.id, response.status_code, response.headers.raw, response.content)


def test_every_send_says_what_it_is_for(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    assert sends_of(icr_app.CallInstallation(app, installation)) == [("call", False)]
    assert sends_of(icr_app.ListInstallations(app, limit=2)) == [("call", False), ("call", False)]
    assert sends_of(icr_app.GetToken(app, installation)) == [("mint", False)]
    # Cached now: the request itself goes at once.
    assert sends_of(icr_app.SendAs(app, installation, "GET", "/projects")) == [("request", True)]
    other = registry.installation_ids[1]
    organization = registry.organization_id(other)
    assert organization is not None
    by_org = icr_app.ByOrganization(organization)
    assert sends_of(icr_app.SendAs(app, by_org, "GET", "/projects", json=True)) == [
        ("lookup", False),
        ("mint", False),
        ("request", True),
    ]
    token = drive_by_hand(icr_app.GetToken(app, None))
    assert isinstance(token, icr_app.Token)
    assert sends_of(icr_app.Revoke(app, token)) == [("revoke", False)]
    assert sends_of(icr_app.RevokeAll(app)) == [("revoke", False), ("revoke", False)]


def test_every_error_has_the_cores_code(registry: FakeRegistry, app: icr_app.App, client: icr_app.Client, installation: str) -> None:
    def code_of(call: object) -> tuple[type, str]:
        with pytest.raises(icr_app.Error) as raised:
            call()  # type: ignore[operator]
        return type(raised.value), raised.value.code

    assert registry.private_key_pem is not None and registry.app_id is not None and registry.webhook_secret is not None
    assert code_of(lambda: icr_app.App("x", "-----BEGIN RSA PUBLIC KEY-----")) == (icr_app.InvalidKeyError, "key")
    assert code_of(lambda: icr_app.GetToken(app, installation, min_life=-1)) == (icr_app.ConfigError, "config")
    assert code_of(lambda: client.get_json(installation, "projects")) == (icr_app.ConfigError, "config")
    assert code_of(lambda: client.installation("missing")) == (icr_app.NotFoundError, "not_found")
    other = registry.installation_ids[1]
    inventory = f"/organizations/{registry.organization_id(other)}/inventory"
    # SendAs(json=True): the core's mapping of a status to its error.
    assert code_of(lambda: client.get_json(other, inventory)) == (icr_app.AuthError, "forbidden")
    assert code_of(lambda: client.get_json(installation, "/no/such/path")) == (icr_app.NotFoundError, "not_found")
    assert code_of(lambda: icr_app.verify_webhook(registry.webhook_secret, b"{}", "sha256=" + "0" * 64)) == (
        icr_app.WebhookError,
        "webhook",
    )
    once = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, retry_attempts=1)
    with icr_app.Client(once) as quick:
        registry.inject_status(429, retry_after=1, path_prefix="/app/installations")
        kind, code = code_of(lambda: quick.installation(installation))
        assert (kind, code) == (icr_app.RateLimitedError, "rate_limited")
        registry.inject_status(503, path_prefix="/app/installations")
        assert code_of(lambda: quick.installation(installation)) == (icr_app.ServerError, "server")
        registry.inject_malformed_body(path_prefix="/app/installations")
        assert code_of(lambda: quick.installation(installation)) == (icr_app.Error, "malformed_body")
    # A failure reported by name: an unknown name is `other`, and the error's code `transport`.
    op = icr_app.GetToken(once, installation)
    step = op.poll()
    assert isinstance(step, icr_app.Send)
    op.handle_failure(step.id, "no such kind", "the wire broke")
    with pytest.raises(icr_app.TransportError) as failed:
        op.poll()
    assert failed.value.code == "transport" and failed.value.kind == "other" and "the wire broke" in str(failed.value)
    # Made by hand: the class's code.
    assert icr_app.Error("mine").code == "other"
    assert icr_app.NotFoundError("mine").code == "not_found"
