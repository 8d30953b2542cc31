"""Testing ICR apps without the registry: ``FakeRegistry``, the project's fake registry
(``icr-app-testkit``) started in-process on ``http://127.0.0.1:PORT``.

    from icr_app.testing import FakeRegistry

    with FakeRegistry.demo() as registry:
        app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)
        with icr_app.Client(app) as client:
            client.installation_token(registry.installation_ids[0])
        assert registry.mint_count(registry.installation_ids[0]) == 1

With pytest, the fixture ``icr_registry`` (this module is a pytest plugin, registered by the
package) gives a ``FakeRegistry.demo()`` per test, closed after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from . import _icr_app

__all__ = ["ConnectProxy", "FakeRegistry", "TlsFront", "icr_registry"]

if TYPE_CHECKING or _icr_app.HAS_TESTKIT:
    from ._icr_app import ConnectProxy, FakeRegistry, TlsFront
else:  # pragma: no cover - a wheel built without the `testkit` feature

    class FakeRegistry:
        """Not available: this build of icr-app was made without the `testkit` feature."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("this build of icr-app has no FakeRegistry (built without the `testkit` feature)")

        @staticmethod
        def demo() -> FakeRegistry:
            raise RuntimeError("this build of icr-app has no FakeRegistry (built without the `testkit` feature)")

    TlsFront = ConnectProxy = FakeRegistry


def _registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry.demo()
    try:
        yield registry
    finally:
        registry.close()


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:
    icr_registry = pytest.fixture(name="icr_registry")(_registry)
    """pytest fixture: a ``FakeRegistry.demo()`` for one test, closed after it."""
