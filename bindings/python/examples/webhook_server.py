"""A webhook endpoint with the standard library's HTTP server: verify the delivery, then act as
the installation it concerns.

With no ``ICR_APP_ID`` set, a self-contained demo: a ``FakeRegistry`` in this process, the
server on a free loopback port, one delivery signed as ICR signs it (answered 202) and one
signed with another secret (answered 403), then exit:

    python examples/webhook_server.py

With the settings of quickstart.py (``ICR_APP_ID``, ``ICR_PRIVATE_KEY`` the key file's path,
``ICR_BASE_URL`` optional) and ``ICR_WEBHOOK_SECRET`` (the secret set on the app's General tab),
it serves ``POST /webhooks`` on 127.0.0.1 until Ctrl-C (``--port 0`` picks a free port; the
first line printed is the URL):

    python examples/webhook_server.py --port 8000
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import icr_app
from icr_app.testing import FakeRegistry


def make_server(port: int, secret: str, client: icr_app.Client) -> ThreadingHTTPServer:
    class Webhooks(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            # The raw body bytes, exactly as received.
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                event = icr_app.verify_webhook(secret, body, self.headers.get(icr_app.SIGNATURE_HEADER))
            except icr_app.WebhookError as refused:
                print("refused:", refused, flush=True)
                self.send_error(403)
                return
            print("verified:", event.kind, "for installation", event.installation_id, flush=True)
            if event.installation_id and event.kind not in ("uninstalled", "suspended"):
                # Act as the installation (a real app would queue this and answer at once).
                projects = client.get_json(event.installation_id, "/projects?limit=10&page=0")
                print("the installation sees", len(projects["projects"]), "projects", flush=True)
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Webhooks)


def demo() -> None:
    with FakeRegistry.demo() as registry:
        assert registry.app_id is not None and registry.private_key_pem is not None  # demo() sets both
        secret = "demo-webhook-secret"
        app = icr_app.App(registry.app_id, registry.private_key_pem, registry.base_url)
        with icr_app.Client(app) as client, make_server(0, secret, client) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_address[1]}/webhooks"
            body, signature = registry.webhook_delivery(secret, "installed", registry.installation_ids[0])
            answered = httpx.post(url, content=body, headers={icr_app.SIGNATURE_HEADER: signature})
            print("a delivery signed as ICR signs it: answered", answered.status_code)
            body, signature = registry.webhook_delivery("another secret", "uninstalled", registry.installation_ids[0])
            forged = httpx.post(url, content=body, headers={icr_app.SIGNATURE_HEADER: signature})
            print("one signed with another secret: answered", forged.status_code)
            server.shutdown()
            if (answered.status_code, forged.status_code) != (202, 403):
                sys.exit("unexpected answers")


def serve(port: int) -> None:
    settings = {name: os.environ.get(name) for name in ("ICR_APP_ID", "ICR_PRIVATE_KEY", "ICR_WEBHOOK_SECRET")}
    missing = [name for name, value in settings.items() if not value]
    if missing:
        sys.exit(f"{', '.join(missing)} not set (see this example's docstring)")
    app_id, key_path, secret = (str(value) for value in settings.values())
    # App reads the key file (or takes the PEM itself); its message never quotes the value.
    try:
        app = icr_app.App(app_id, key_path, os.environ.get("ICR_BASE_URL") or None)
    except icr_app.InvalidKeyError as e:
        sys.exit(f"ICR_PRIVATE_KEY: {e}")
    with icr_app.Client(app) as client, make_server(port, secret, client) as server:
        print(f"listening on http://127.0.0.1:{server.server_address[1]}/webhooks (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="the port to serve on (0: a free one); default 8000")
    port = parser.parse_args().port
    if os.environ.get("ICR_APP_ID"):
        serve(port)
    else:
        print("ICR_APP_ID is not set: a demo against a FakeRegistry in this process", file=sys.stderr)
        demo()
