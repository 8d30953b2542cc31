"""Quick start: an installation token, a call as the installation, and the installations.

Runs against the fake registry when ICR_APP_ID is not set:

    python examples/quickstart.py
"""

from __future__ import annotations

import os

import icr_app
from icr_app.testing import FakeRegistry


def main(app: icr_app.App, installation_id: str) -> None:
    with icr_app.Client(app) as client:
        token = client.installation_token(installation_id)
        print(token)  # the token itself is never printed: token.token is the one way to read it
        projects = client.get_json(installation_id, "/projects?limit=10&page=0")
        print(len(projects["projects"]), "projects")
        for installation in client.installations():
            name = installation.organization.name if installation.organization else "?"
            print(installation.id, name, installation.permissions)
        print("revoked", client.revoke_all(), "tokens")


if __name__ == "__main__":
    if "ICR_APP_ID" in os.environ:
        with open(os.environ["ICR_PRIVATE_KEY_PATH"]) as key:
            app = icr_app.App(os.environ["ICR_APP_ID"], key.read())
        main(app, os.environ["ICR_INSTALLATION_ID"])
    else:
        with FakeRegistry.demo() as registry:
            assert registry.app_id is not None and registry.private_key_pem is not None
            main(icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url), registry.installation_ids[0])
