"""Real loopback servers for the tests: another host (a second HTTP server on another port) that
records what it is sent, a forward HTTP proxy that records what it is asked and forwards it, and
a registry that trickles its response headers forever."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Optional, Type, TypeVar
from urllib.parse import urlsplit


class Seen:
    """One request a server received."""

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.headers = headers

    @property
    def authorization(self) -> Optional[str]:
        return self.headers.get("authorization")

    def __repr__(self) -> str:
        # The test's own tokens: shown only as whether one came.
        return f"Seen({self.method} {self.target}, authorization={'yes' if self.authorization else 'no'})"


S = TypeVar("S", bound="_Server")


class _Server:
    """A threading HTTP server on 127.0.0.1 whose handler calls ``self.answer``."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    outer.seen.append(Seen(self.command, self.path, headers))
                status, reply_headers, reply = outer.answer(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in reply_headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()


class OtherHost(_Server):
    """Another host: answers every request with ``status`` (and a ``Date`` ``date_offset``
    seconds off the real time) and records it."""

    def __init__(self, status: int = 200, *, date_offset: float = 0.0) -> None:
        self.status = status
        self.date_offset = date_offset
        super().__init__()

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        date = datetime.now(timezone.utc) + timedelta(seconds=self.date_offset)
        return self.status, [("date", format_datetime(date, usegmt=True)), ("content-type", "application/json")], b"{}"


class RecordingProxy(_Server):
    """A forward HTTP proxy: records each request it is asked to forward (absolute-form target,
    every header) and forwards plain ``http://`` ones to their host."""

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        url = urlsplit(target)
        if url.scheme != "http" or url.hostname is None:
            return 502, [], b"not a forward proxy request"
        connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        try:
            forwarded = {k: v for k, v in headers.items() if k not in ("proxy-connection", "connection", "host")}
            path = url.path + (f"?{url.query}" if url.query else "")
            connection.request(method, path or "/", body=body or None, headers=forwarded)
            response = connection.getresponse()
            reply = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
            return response.status, kept, reply
        finally:
            connection.close()


class TricklingRegistry:
    """A registry on a raw loopback socket that answers a request's status line, then one header
    line every ``interval`` seconds, for ``duration`` seconds (or until the client goes away),
    and never ends its headers. With ``mints=True`` it answers mints (``.../accessTokens``)
    properly at once, so that a call's own request is the one that trickles."""

    def __init__(self, *, mints: bool = False, interval: float = 0.3, duration: float = 30.0) -> None:
        self.mints = mints
        self.interval = interval
        self.duration = duration
        self.requests: list[str] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buffered) < length:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                buffered = buffered[length:]
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                self.requests.append(request_line)
                path = request_line.split(" ")[1] if " " in request_line else ""
                try:
                    if self.mints and path.endswith("/accessTokens"):
                        connection.sendall(_mint_answer())
                        continue  # keep-alive: the next request may come on this connection
                    connection.sendall(b"HTTP/1.1 200 OK\r\n")
                    ends = time.monotonic() + self.duration
                    n = 0
                    while time.monotonic() < ends and not self._closed.is_set():
                        time.sleep(self.interval)
                        n += 1
                        connection.sendall(f"x-trickle-{n}: {n}\r\n".encode())
                except OSError:
                    pass
                return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def __enter__(self) -> TricklingRegistry:
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()


def _mint_answer() -> bytes:
    now = datetime.now(timezone.utc)
    body = json.dumps(
        {
            "token": "crs_" + "7" * 48,
            "expiresAt": (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "permissions": {"organization_info": "VIEW"},
            "installationId": "i-1",
            "appId": "app-1",
        }
    ).encode()
    head = (
        "HTTP/1.1 201 Created\r\n"
        f"date: {format_datetime(now, usegmt=True)}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
