"""Your own httpx (sync and async) and requests clients, authorised as an installation.

    python examples/own_http_client.py
"""

from __future__ import annotations

import asyncio

import httpx
import requests

import icr_app
from icr_app.testing import FakeRegistry


async def with_async_httpx(app: icr_app.App, installation_id: str) -> None:
    async with icr_app.AsyncClient(app) as client:
        auth = icr_app.InstallationAuth(client, installation_id)
        async with httpx.AsyncClient(base_url=app.base_url, auth=auth) as http:
            print("async httpx:", (await http.get("/projects")).status_code)


def main(registry: FakeRegistry) -> None:
    assert registry.app_id is not None and registry.private_key_pem is not None
    app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)
    installation_id = registry.installation_ids[0]
    with icr_app.Client(app) as client:
        auth = icr_app.InstallationAuth(client, installation_id)
        with httpx.Client(base_url=app.base_url, auth=auth) as http:
            print("httpx:", http.get("/projects").status_code)
            registry.revoke_all_tokens()  # the next request gets a 401: a new token is minted once
            response = http.get("/projects")
            print("after revocation:", response.status_code, "history", [r.status_code for r in response.history])
        print("requests:", requests.get(app.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation_id)).status_code)
    asyncio.run(with_async_httpx(app, installation_id))


if __name__ == "__main__":
    with FakeRegistry.demo() as registry:
        main(registry)
