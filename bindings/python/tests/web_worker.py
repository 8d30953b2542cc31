"""A stand-in for one web worker process, for tests/test_shared_store.py: its own App and
client on the shared Redis, as a worker of a web server would make them at start-up.

Settings from the environment: ``ICR_BASE_URL``, ``ICR_APP_ID``, ``ICR_PRIVATE_KEY`` (the PEM),
``ICR_INSTALLATION_ID``, ``ICR_REDIS_URL``, ``ICR_REDIS_TIMEOUT`` (seconds); ``ICR_ASYNC=1``
for the async client; ``ICR_ORGANIZATION_ID`` to ask ``ByOrganization`` instead of by the
installation's id. Prints
``ready``, waits for a line on stdin (so the test starts every worker's request at once), asks
for the installation's token, and prints one JSON line: the token's SHA-256 (not the token) and
the App's stats.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from typing import Union

import icr_app


def main() -> None:
    app = icr_app.App(os.environ["ICR_APP_ID"], os.environ["ICR_PRIVATE_KEY"], os.environ["ICR_BASE_URL"])
    organization = os.environ.get("ICR_ORGANIZATION_ID")
    installation: Union[str, icr_app.ByOrganization] = (
        icr_app.ByOrganization(organization) if organization else os.environ["ICR_INSTALLATION_ID"]
    )
    redis_url = os.environ["ICR_REDIS_URL"]
    redis_timeout = float(os.environ["ICR_REDIS_TIMEOUT"])
    print("ready", flush=True)
    sys.stdin.readline()
    if os.environ.get("ICR_ASYNC") == "1":

        async def fetch() -> icr_app.Token:
            async with icr_app.AsyncClient(app, redis_url=redis_url, redis_timeout=redis_timeout) as client:
                return await client.installation_token(installation)

        token = asyncio.run(fetch())
    else:
        with icr_app.Client(app, redis_url=redis_url, redis_timeout=redis_timeout) as client:
            token = client.installation_token(installation)
    digest = hashlib.sha256(token.token.encode()).hexdigest()
    print(json.dumps({"token_sha256": digest, "stats": app.stats().as_dict()}), flush=True)


if __name__ == "__main__":
    main()
