"""A webhook endpoint with the standard library's HTTP server: verify, then act as the installation.

    python examples/webhook_server.py        # serves one fake delivery to itself, then exits
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx

import icr_app
from icr_app.testing import FakeRegistry

SECRET = "demo-webhook-secret-6f1c2a"  # in production: the secret set on the app's General tab


class Webhooks(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = icr_app.verify_webhook(SECRET, body, self.headers.get(icr_app.SIGNATURE_HEADER))
        except icr_app.WebhookError as refused:
            self.send_error(403, str(refused))
            return
        print("verified:", event.kind, "for installation", event.installation_id)
        self.send_response(202)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    with FakeRegistry.demo() as registry:
        server = HTTPServer(("127.0.0.1", 0), Webhooks)
        threading.Thread(target=server.handle_request, daemon=True).start()
        body, signature = registry.webhook_delivery(SECRET, "installed", registry.installation_ids[0])
        url = f"http://127.0.0.1:{server.server_address[1]}/webhooks"
        response = httpx.post(url, content=body, headers={icr_app.SIGNATURE_HEADER: signature})
        print("answered", response.status_code)
        server.server_close()


if __name__ == "__main__":
    main()
