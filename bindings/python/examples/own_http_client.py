"""Your own httpx (sync and async) and requests clients, authorised as an installation; a token
revoked behind the client's back is replaced on the 401.

Settings come from the environment, as for quickstart.py: ``ICR_APP_ID``, ``ICR_PRIVATE_KEY``
(the key file's path), ``ICR_INSTALLATION_ID``, ``ICR_BASE_URL`` (optional). With no
``ICR_APP_ID`` set, the example starts a ``FakeRegistry`` in this process and runs against it:

    python examples/own_http_client.py
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import requests

import icr_app
from icr_app.testing import FakeRegistry


async def with_async_httpx(app: icr_app.App, installation_id: str) -> None:
    async with icr_app.AsyncClient(app) as client:
        auth = icr_app.InstallationAuth(client, installation_id)
        async with httpx.AsyncClient(base_url=app.base_url, auth=auth) as http:
            print("async httpx:", (await http.get("/projects")).status_code)
        await client.revoke_all()


def main(app_id: str, private_key: str, base_url: str | None, installation_id: str) -> None:
    app = icr_app.App(app_id, private_key, base_url)
    with icr_app.Client(app) as client:
        auth = icr_app.InstallationAuth(client, installation_id)
        with httpx.Client(base_url=app.base_url, auth=auth) as http:
            print("httpx:", http.get("/projects").status_code)
            # Another process (here a client of another App of the same app) revokes the token
            # this client holds: the next request gets a 401, and the auth mints a new token and
            # sends the request once more.
            with icr_app.Client(icr_app.App(app_id, private_key, base_url)) as other:
                other.revoke(client.installation_token(installation_id).token)
            response = http.get("/projects")
            print("after revocation:", response.status_code, "history", [r.status_code for r in response.history])
        print("requests:", requests.get(app.base_url + "/projects", auth=icr_app.RequestsAuth(client, installation_id)).status_code)
        client.revoke_all()
    asyncio.run(with_async_httpx(app, installation_id))


def setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set (see this example's docstring)")
    return value


if __name__ == "__main__":
    if os.environ.get("ICR_APP_ID"):
        main(
            setting("ICR_APP_ID"),
            setting("ICR_PRIVATE_KEY"),  # the key file's path (or the PEM itself): App reads it
            os.environ.get("ICR_BASE_URL") or None,
            setting("ICR_INSTALLATION_ID"),
        )
    else:
        print("ICR_APP_ID is not set: running against a FakeRegistry in this process", file=sys.stderr)
        with FakeRegistry.demo() as registry:
            assert registry.app_id is not None and registry.private_key_pem is not None  # demo() sets both
            main(registry.app_id, registry.private_key_pem, registry.base_url, registry.installation_ids[0])
