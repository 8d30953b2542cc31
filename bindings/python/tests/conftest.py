"""Fixtures: a fake registry (real loopback HTTP) per test, an App and clients on it."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

import icr_app
from icr_app.testing import FakeRegistry

#: The repository's fixtures, shared with the Rust tests.
CORE_FIXTURES = Path(__file__).resolve().parents[3] / "core" / "tests" / "fixtures"


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry.demo() as registry:
        yield registry


@pytest.fixture
def app(registry: FakeRegistry) -> icr_app.App:
    assert registry.app_id is not None and registry.private_key_pem is not None
    return icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)


@pytest.fixture
def client(app: icr_app.App) -> Iterator[icr_app.Client]:
    with icr_app.Client(app) as client:
        yield client


@pytest.fixture
async def aclient(app: icr_app.App) -> AsyncIterator[icr_app.AsyncClient]:
    async with icr_app.AsyncClient(app) as client:
        yield client


@pytest.fixture
def installation(registry: FakeRegistry) -> str:
    return registry.installation_ids[0]
