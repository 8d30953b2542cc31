"""The public surface: every public name documented, the version, the pytest fixture."""

from __future__ import annotations

import inspect

import pytest

import icr_app
import icr_app.testing
from icr_app.testing import FakeRegistry


def public_members(obj: object) -> list[tuple[str, object]]:
    return [(n, m) for n, m in inspect.getmembers(obj) if not n.startswith("_")]


@pytest.mark.parametrize("name", [n for n in icr_app.__all__ if not n.isupper() and n != "__version__"])
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(icr_app, name)
    assert (obj.__doc__ or "").strip(), name
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for member_name, member in public_members(obj):
            assert (getattr(member, "__doc__", None) or "").strip(), f"{name}.{member_name}"


def test_testing_module_is_documented() -> None:
    assert (icr_app.testing.__doc__ or "").strip()
    for member_name, member in public_members(FakeRegistry):
        if member_name in ("DEMO_PRIVATE_KEY_PEM",):
            continue
        assert (getattr(member, "__doc__", None) or "").strip(), f"FakeRegistry.{member_name}"


def test_version_and_constants() -> None:
    assert icr_app.__version__ == "0.1.0"
    assert icr_app.DEFAULT_BASE_URL == "https://api.carbonregistry.com"
    assert icr_app.DEFAULT_API_VERSION == "2023-06-16"
    assert icr_app.SIGNATURE_HEADER == "x-icr-signature-256"
    for exc in [icr_app.InvalidKeyError, icr_app.AuthError, icr_app.NotFoundError, icr_app.RateLimitedError,
                icr_app.TransportError, icr_app.WebhookError, icr_app.ConfigError, icr_app.ServerError]:
        assert issubclass(exc, icr_app.Error)
        assert exc.__module__ == "icr_app"


def test_the_pytest_fixture(icr_registry: FakeRegistry) -> None:
    assert icr_registry.base_url.startswith("http://127.0.0.1:")
    assert len(icr_registry.installation_ids) == 3


def test_an_empty_registry_with_your_own_app() -> None:
    with FakeRegistry() as registry:
        registry.register_app_with_private_key("my-app", FakeRegistry.DEMO_PRIVATE_KEY_PEM)
        installation = registry.add_installation("my-app", "Acme", [("organization_info", "VIEW")])
        with icr_app.Client(icr_app.App("my-app", FakeRegistry.DEMO_PRIVATE_KEY_PEM, registry.base_url)) as client:
            assert client.installation(installation).organization is not None
        assert registry.app_id is None
    with pytest.raises(RuntimeError, match="closed"):
        registry.mint_count(installation)
