"""The async client: 500 tasks asking for one installation's token cause one mint.

    python examples/async_quickstart.py
"""

from __future__ import annotations

import asyncio

import icr_app
from icr_app.testing import FakeRegistry


async def main(app: icr_app.App, installation_id: str) -> None:
    async with icr_app.AsyncClient(app) as client:
        tokens = await asyncio.gather(*(client.installation_token(installation_id) for _ in range(500)))
        print(len({t.token for t in tokens}), "distinct token for", len(tokens), "tasks")
        projects = await client.get_json(installation_id, "/projects?limit=10&page=0")
        print(len(projects["projects"]), "projects")
        print("revoked", await client.revoke_all(), "tokens")


if __name__ == "__main__":
    with FakeRegistry.demo() as registry:
        assert registry.app_id is not None and registry.private_key_pem is not None
        app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)
        asyncio.run(main(app, registry.installation_ids[0]))
        print("mints:", registry.mint_count(registry.installation_ids[0]))
