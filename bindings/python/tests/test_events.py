"""Installation events reach the fleet (issue 26): ``handle_event`` with a verified
``uninstalled`` delivery drops the installation's token here and in the shared Redis (even a
token this process never held), so the next process mints anew; ``forget`` does the same by
hand; other events drop nothing. Also the store's lease time and CA file settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import icr_app
from icr_app.testing import FakeRegistry

from test_shared_store import SLOW_MACHINE, make_app, shared


def delivery(registry: FakeRegistry, kind: str, installation: str) -> icr_app.WebhookEvent:
    assert registry.webhook_secret is not None
    body, signature = registry.webhook_delivery(registry.webhook_secret, kind, installation)
    return icr_app.verify_webhook(registry.webhook_secret, body, signature)


def test_an_uninstalled_event_makes_a_new_process_mint_anew(
    registry: FakeRegistry, redis_url: str, installation: str
) -> None:
    first = icr_app.Client(make_app(registry, **shared(redis_url))).installation_token(installation)
    # Another process of the fleet shares it: no mint.
    assert icr_app.Client(make_app(registry, **shared(redis_url))).installation_token(installation).token == first.token
    assert registry.mint_count(installation) == 1
    # The process that receives the webhook never held the token: the delete is unconditional.
    receiver = icr_app.Client(make_app(registry, **shared(redis_url)))
    assert receiver.handle_event(delivery(registry, "uninstalled", installation)) is True
    fresh = icr_app.Client(make_app(registry, **shared(redis_url))).installation_token(installation)
    assert registry.mint_count(installation) == 2
    assert fresh.token != first.token


@pytest.mark.parametrize("kind", ["suspended", "newPermissionsAccepted"])
def test_suspended_and_new_permissions_drop_the_token_in_this_process_too(
    registry: FakeRegistry, redis_url: str, installation: str, kind: str
) -> None:
    client = icr_app.Client(make_app(registry, **shared(redis_url)))
    first = client.installation_token(installation)
    assert client.handle_event(delivery(registry, kind, installation)) is True
    assert client.installation_token(installation).token != first.token
    assert registry.mint_count(installation) == 2


def test_other_events_drop_nothing(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    client = icr_app.Client(make_app(registry, **shared(redis_url)))
    first = client.installation_token(installation)
    for kind in ["installed", "unsuspended", "warehouseTransaction"]:
        assert client.handle_event(delivery(registry, kind, installation)) is False
    assert client.installation_token(installation).token == first.token
    assert registry.mint_count(installation) == 1


def test_forget_by_hand_and_without_a_store(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    client = icr_app.Client(make_app(registry, **shared(redis_url)))
    first = client.installation_token(installation)
    client.forget(installation)
    assert icr_app.Client(make_app(registry, **shared(redis_url))).installation_token(installation).token != first.token
    alone = icr_app.Client(make_app(registry))
    token = alone.installation_token(installation)
    alone.forget(installation)
    assert alone.installation_token(installation).token != token.token
    with pytest.raises(TypeError):
        alone.forget(42)  # type: ignore[arg-type]


def test_the_async_client_handles_events_and_forgets(registry: FakeRegistry, redis_url: str, installation: str) -> None:
    async def main() -> None:
        client = icr_app.AsyncClient(make_app(registry, **shared(redis_url)))
        first = await client.installation_token(installation)
        assert await client.handle_event(delivery(registry, "uninstalled", installation)) is True
        second = await client.installation_token(installation)
        assert second.token != first.token
        await client.forget(installation)
        assert (await client.installation_token(installation)).token != second.token
        await client.aclose()

    asyncio.run(main())
    assert registry.mint_count(installation) == 3


def test_the_lease_time_is_the_stores_and_needs_a_url(registry: FakeRegistry, redis_url: str) -> None:
    app = make_app(registry, redis_url=redis_url, redis_timeout=SLOW_MACHINE, redis_lease_ttl=2.5)
    assert app.redis_url == redis_url
    # The same again is fine; another lease time for the same App is refused.
    icr_app.Client(app, redis_url=redis_url, redis_timeout=SLOW_MACHINE, redis_lease_ttl=2.5)
    with pytest.raises(icr_app.ConfigError, match="redis_lease_ttl"):
        icr_app.Client(app, redis_url=redis_url, redis_timeout=SLOW_MACHINE, redis_lease_ttl=9)
    with pytest.raises(icr_app.ConfigError, match="redis_url"):
        make_app(registry, redis_lease_ttl=2.5)


def test_a_ca_file_is_read_when_the_app_is_made(registry: FakeRegistry, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(icr_app.ConfigError, match="nowhere.pem"):
        make_app(registry, ca_file=missing)
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate")
    with pytest.raises(icr_app.ConfigError, match="no certificate"):
        make_app(registry, ca_file=str(empty))
    fixtures = Path(__file__).resolve().parents[3] / "core" / "tests" / "fixtures"
    certificates = sorted(fixtures.rglob("*.crt")) + sorted(fixtures.rglob("*cert*.pem"))
    if certificates:
        app = make_app(registry, ca_file=certificates[0], redis_url="rediss://:pw@127.0.0.1:1/0")
        assert app.ca_file == str(certificates[0])
        assert app.redis_url == "rediss://:***@127.0.0.1:1/0"


def test_cluster_and_sentinel_urls_are_taken_and_never_show_a_password(registry: FakeRegistry) -> None:
    app = make_app(registry, redis_url="redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001")
    assert app.redis_url == "redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001"
    app = make_app(registry, redis_url="rediss+sentinel://app:s3cret@127.0.0.1:26379/primary/2")
    assert app.redis_url == "rediss+sentinel://app:***@127.0.0.1:26379/primary/2"
    with pytest.raises(icr_app.ConfigError) as refused:
        make_app(registry, redis_url="redis+sentinel://:s3cret@127.0.0.1:26379")
    assert "s3cret" not in str(refused.value) and "MASTER_NAME" in str(refused.value)
