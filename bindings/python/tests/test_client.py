"""Every method of the blocking Client, against the fake registry over loopback HTTP."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import httpx
import pytest

import icr_app
from icr_app.testing import FakeRegistry


def test_installation_token_is_minted_once_and_cached(
    registry: FakeRegistry, client: icr_app.Client, installation: str
) -> None:
    token = client.installation_token(installation)
    assert token.token.startswith("crs_")
    assert registry.token_is_valid(token)
    assert client.installation_token(installation) == token
    assert registry.mint_count(installation) == 1
    assert token.installation_id == installation
    assert token.organization_id == registry.organization_id(installation)
    assert token.permissions == {
        "organization_info": "VIEW",
        "organization_inventory": "REQUEST",
        "organization_warehouse": "WRITE",
    }
    assert token.expires_at.tzinfo is not None and token.expires_at.utcoffset() == timezone.utc.utcoffset(None)
    assert 7000 < (token.expires_at - datetime.now(timezone.utc)).total_seconds() <= 7200
    assert 7000 < token.remaining() <= 7200


def test_cached_token_whatever_string_names_the_installation(
    registry: FakeRegistry, app: icr_app.App, client: icr_app.Client, installation: str
) -> None:
    """The hit path keeps the last token's object (asked again for the same id, the same object
    comes back): an equal string, a str subclass and another installation in between all get the
    right token, each call counted once."""

    class Id(str):
        pass

    other = registry.installation_ids[1]
    minted = client.installation_token(installation)
    first = client.installation_token(installation)
    assert first == minted
    copy = "".join(list(installation))
    assert copy is not installation
    assert client.installation_token(copy) is first
    assert client.installation_token(Id(installation)) == first
    assert client.installation_token(other).installation_id == other
    again = client.installation_token(installation)
    assert again == first
    # min_life asks the core in full, and leaves the kept object alone.
    assert client.installation_token(installation, min_life=120) == first
    assert client.installation_token(installation) is again
    stats = client.stats()
    assert (stats.mints, stats.misses) == (2, 2)
    assert stats.hits == 6
    # A revoked token is never handed out again from what the hit path keeps.
    assert client.revoke_all() == 2
    fresh = client.installation_token(installation)
    assert fresh != first and registry.token_is_valid(fresh)
    assert registry.mint_count(installation) == 2
    # The kept object is the revoked token's: the new token replaces it, counted as one hit.
    hits = client.stats().hits
    again = client.installation_token(installation)
    assert again == fresh and client.installation_token(installation) is again
    assert client.stats().hits == hits + 2
    with pytest.raises(TypeError):
        client.installation_token(42)  # type: ignore[arg-type]


def test_min_life(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    first = client.installation_token(installation, min_life=60)
    assert client.installation_token(installation, min_life=3600) == first
    # A minimum no token of this registry can meet is an error that says so, without a mint.
    with pytest.raises(icr_app.ConfigError, match="minimum token life") as error:
        client.installation_token(installation, min_life=3 * 3600)
    assert error.value.status is None
    assert registry.mint_count(installation) == 1
    with pytest.raises(icr_app.ConfigError):
        client.installation_token(installation, min_life=-1)


def test_app_token_and_jwt(registry: FakeRegistry, app: icr_app.App, client: icr_app.Client) -> None:
    token = client.app_token()
    assert token.installation_id is None
    assert client.app_token() == token
    assert registry.app_token_mint_count() == 1
    jwt = client.jwt()
    header, claims, _ = jwt.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert decoded["iss"] == registry.app_id
    assert 500 <= decoded["exp"] - decoded["iat"] <= 600
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "RS256"
    assert app.jwt() == jwt, "cached"


def test_installations_every_page(registry: FakeRegistry, client: icr_app.Client) -> None:
    assert registry.app_id is not None
    for n in range(150):  # more than one page of 100
        registry.add_installation(registry.app_id, f"Org {n}", [("organization_info", "VIEW")])
    found = client.installations()
    assert len(found) == 153
    assert [i.id for i in found[:3]] == registry.installation_ids
    first = found[0]
    assert first.organization is not None
    assert first.organization.name == "Nordic Peatland Restoration"
    assert first.app_id == registry.app_id
    assert first.raw["id"] == first.id
    assert sum(1 for r in registry.requests() if r["path"].startswith("/app/installations?")) == 2


def test_installation(registry: FakeRegistry, client: icr_app.Client) -> None:
    installation = client.installation(registry.installation_ids[2])
    assert installation.id == registry.installation_ids[2]
    assert installation.permissions == {"organization_info": "VIEW", "organization_members": "VIEW"}
    assert installation.organization is not None
    assert installation.organization.id == registry.organization_id(installation.id)
    assert installation.organization.raw["id"] == installation.organization.id
    with pytest.raises(icr_app.NotFoundError) as error:
        client.installation("no-such-installation")
    assert error.value.status == 404
    assert "404 Not Found" in str(error.value)


def test_get_json(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    projects = client.get_json(installation, "/projects?limit=2&page=0")
    assert len(projects["projects"]) == 2
    org = registry.organization_id(installation)
    assert client.get_json(installation, f"/organizations/{org}")["id"] == org
    # The second installation lacks organization_inventory: 403.
    other = registry.installation_ids[1]
    other_org = registry.organization_id(other)
    with pytest.raises(icr_app.AuthError) as error:
        client.get_json(other, f"/organizations/{other_org}/inventory")
    assert error.value.status == 403
    with pytest.raises(icr_app.NotFoundError):
        client.get_json(installation, "/no/such/path")
    with pytest.raises(icr_app.ConfigError, match="must start with"):
        client.get_json(installation, "projects")
    # As the app (an app access token).
    assert "projects" in client.get_json(None, "/projects?limit=1&page=0")


def test_request(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    response = client.request(installation, "GET", "/projects?limit=1&page=0")
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert len(response.json()["projects"]) == 1
    # Any status comes back as a response.
    missing = client.request(installation, "GET", "/nothing/here")
    assert missing.status_code == 404
    # A JSON body is sent as JSON.
    created = client.request(
        None,
        "POST",
        "/app/create/user/organization",
        json={"user": {"email": "a@example.org"}, "organization": {"fullName": "Acme", "type": "other"}},
    )
    assert created.status_code in (200, 201, 401), created.text
    sent = [r for r in registry.requests() if r["path"] == "/app/create/user/organization"][-1]
    assert json.loads(sent["body"])["organization"]["fullName"] == "Acme"
    assert dict(sent["headers"])["content-type"] == "application/json"
    with pytest.raises(TypeError):
        client.request(installation, "POST", "/x", json={}, content=b"{}")


def test_standard_headers(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    client.get_json(installation, "/projects")
    sent = dict(registry.requests()[-1]["headers"])
    assert sent["x-icr-api-version"] == "2023-06-16"
    assert sent["accept"] == "application/json"
    assert sent["authorization"].startswith("Bearer crs_")


def test_revoke_and_revoke_all(registry: FakeRegistry, client: icr_app.Client) -> None:
    tokens = [client.installation_token(i) for i in registry.installation_ids]
    app_token = client.app_token()
    client.revoke(tokens[0])
    assert registry.token_status(tokens[0]) == "revoked"
    assert client.revoke_all() == 3
    assert all(registry.token_status(t) == "revoked" for t in [*tokens, app_token])
    assert client.revoke_all() == 0
    # The next call mints again.
    assert client.installation_token(registry.installation_ids[0]) != tokens[0]
    assert registry.mint_count(registry.installation_ids[0]) == 2


def test_revoke_all_passes_over_tokens_already_invalid(registry: FakeRegistry, client: icr_app.Client) -> None:
    """A token the registry already refuses (401: expired, or revoked with its installation
    when the organization reinstalled) is dropped by ``revoke_all``, not counted, no error."""
    tokens = [client.installation_token(i) for i in registry.installation_ids]
    registry.expire_token(tokens[0])
    registry.reinstall(registry.organization_ids[1])
    assert registry.token_status(tokens[1]) == "revoked"
    assert client.revoke_all() == 1
    assert registry.token_status(tokens[2]) == "revoked"
    # The cache is empty: the next call mints again.
    fresh = client.installation_token(registry.installation_ids[2])
    assert fresh != tokens[2] and registry.mint_count(registry.installation_ids[2]) == 2


def test_uninstalled(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    registry.remove_installation(installation)
    with pytest.raises(icr_app.NotFoundError, match="still installed"):
        client.installation_token(installation)


def test_invalid_installation_id(client: icr_app.Client) -> None:
    with pytest.raises(icr_app.ConfigError):
        client.installation_token("")


def test_user_http_client_is_used_as_given(registry: FakeRegistry, app: icr_app.App, installation: str) -> None:
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]}) as http:
        with icr_app.Client(app, http_client=http) as client:
            client.installation_token(installation)
        assert not http.is_closed, "a client handed in is not closed"
    assert seen == [f"/app/installations/{installation}/accessTokens"]


def test_closed_client(app: icr_app.App, installation: str) -> None:
    client = icr_app.Client(app)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.installation_token(installation)


def test_app_settings(registry: FakeRegistry) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(
        registry.app_id, registry.private_key_pem, registry.base_url, api_version="2023-06-16", user_agent="tests/1"
    )
    assert app.app_id == registry.app_id
    assert app.base_url == registry.base_url
    assert app.api_version == "2023-06-16"
    assert app.policy.timeout == 30 and app.policy.max_body == 8 * 1024 * 1024
    assert not app.policy.allow_insecure_http
    with icr_app.Client(app) as client:
        client.installation_token(registry.installation_ids[0])
    assert dict(registry.requests()[-1]["headers"])["user-agent"] == "tests/1"
    with pytest.raises(icr_app.ConfigError):
        icr_app.App(registry.app_id, registry.private_key_pem, "not a url")
    with pytest.raises(icr_app.ConfigError):
        icr_app.App("", registry.private_key_pem)
    # An unsupported API version is the registry's 400, with the hint.
    bad = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url, api_version="1999-01-01")
    with icr_app.Client(bad) as client, pytest.raises(icr_app.Error, match="x-icr-api-version") as error:
        client.installation_token(registry.installation_ids[0])
    assert error.value.status == 400


def test_a_path_is_a_path_whatever_its_query_holds(registry: FakeRegistry, client: icr_app.Client, installation: str) -> None:
    path = "/projects?limit=1&page=0&next=https://elsewhere.example/x"
    response = client.request(installation, "GET", path)
    assert response.status_code == 200
    assert len(response.json()["projects"]) == 1
    assert registry.requests()[-1]["path"] == path
    assert len(client.get_json(installation, "/projects?limit=2&back=http://x")["projects"]) == 2
    # An absolute URL is still one, and only the registry's gets a token.
    assert client.request(installation, "GET", registry.base_url + "/projects").status_code == 200
    with pytest.raises(icr_app.ConfigError, match="not the configured registry"):
        client.request(installation, "GET", "https://elsewhere.example/projects?x=/y")
