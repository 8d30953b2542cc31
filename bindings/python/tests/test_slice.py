"""The vertical slice: App, GetToken through the sync Client, against FakeRegistry.demo()."""

from __future__ import annotations

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
