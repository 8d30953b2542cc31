"""The async client: 500 tasks asking for one installation's token cause one mint.

Settings come from the environment, as for quickstart.py: ``ICR_APP_ID``, ``ICR_PRIVATE_KEY``
(the key file's path), ``ICR_INSTALLATION_ID``, ``ICR_BASE_URL`` (optional). With no
``ICR_APP_ID`` set, the example starts a ``FakeRegistry`` in this process and runs against it:

    python examples/async_quickstart.py
"""

from __future__ import annotations

import asyncio
import os
import sys

import icr_app
from icr_app.testing import FakeRegistry


async def main(app: icr_app.App, installation_id: str) -> None:
    async with icr_app.AsyncClient(app) as client:
        tokens = await asyncio.gather(*(client.installation_token(installation_id) for _ in range(500)))
        print(len({t.token for t in tokens}), "distinct token for", len(tokens), "tasks;", client.stats().mints, "mint")
        projects = await client.get_json(installation_id, "/projects?limit=10&page=0")
        print(len(projects["projects"]), "projects")
        print("revoked", await client.revoke_all(), "token(s)")


def setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set (see this example's docstring)")
    return value


def app_from_environment() -> icr_app.App:
    # App reads the key file (or takes the PEM itself); its message never quotes the value.
    try:
        return icr_app.App(setting("ICR_APP_ID"), setting("ICR_PRIVATE_KEY"), os.environ.get("ICR_BASE_URL") or None)
    except icr_app.InvalidKeyError as e:
        sys.exit(f"ICR_PRIVATE_KEY: {e}")


if __name__ == "__main__":
    if os.environ.get("ICR_APP_ID"):
        asyncio.run(main(app_from_environment(), setting("ICR_INSTALLATION_ID")))
    else:
        print("ICR_APP_ID is not set: running against a FakeRegistry in this process", file=sys.stderr)
        with FakeRegistry.demo() as registry:
            assert registry.app_id is not None and registry.private_key_pem is not None  # demo() sets both
            app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)
            asyncio.run(main(app, registry.installation_ids[0]))
            print("mints seen by the registry:", registry.mint_count(registry.installation_ids[0]))
