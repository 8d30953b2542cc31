"""Quick start: an installation token, calls as the installation, the app's installations, and
the tokens revoked on the way out.

Settings come from the environment, as for the Rust examples and the CLI: ``ICR_APP_ID``,
``ICR_PRIVATE_KEY`` (the path of the key file downloaded from the app's Credentials tab),
``ICR_INSTALLATION_ID``, and ``ICR_BASE_URL`` (optional: the production API when unset).
``icr-app mock`` prints them for its fake registry. With no ``ICR_APP_ID`` set, the example
starts a ``FakeRegistry`` in this process and runs against it:

    python examples/quickstart.py
"""

from __future__ import annotations

import os
import sys

import icr_app
from icr_app.testing import FakeRegistry


def main(app: icr_app.App, installation_id: str) -> None:
    with icr_app.Client(app) as client:
        # Minted once, then served from the cache and refreshed ahead of expiry.
        token = client.installation_token(installation_id)
        print(token)  # the token itself is never printed: token.token is the one way to read it
        # Any GET as the installation, parsed as JSON (a non-2xx status raises its icr_app.Error).
        projects = client.get_json(installation_id, "/projects?limit=10&page=0")
        print(len(projects["projects"]), "projects")
        # Any request as the installation: an httpx.Response, whatever its status.
        response = client.request(installation_id, "GET", f"/organizations/{token.organization_id}")
        print("organization:", response.status_code, response.json().get("fullName"))
        # Every installation of the app, all pages.
        for installation in client.installations():
            name = installation.organization.name if installation.organization else "(no organization)"
            print("installation", installation.id, name, installation.permissions)
        # On shutdown: revoke every token this client minted.
        print("revoked", client.revoke_all(), "token(s)")


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
        main(app_from_environment(), setting("ICR_INSTALLATION_ID"))
    else:
        print("ICR_APP_ID is not set: running against a FakeRegistry in this process", file=sys.stderr)
        with FakeRegistry.demo() as registry:
            assert registry.app_id is not None and registry.private_key_pem is not None  # demo() sets both
            main(icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url), registry.installation_ids[0])
