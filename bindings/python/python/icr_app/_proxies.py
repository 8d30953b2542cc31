"""Credentials never go through a proxy in clear.

A token (or the app JWT) on a plain ``http://`` request (a loopback registry, a sidecar with
``allow_insecure_http``) is readable by any proxy on its way. ``https://`` is fine: a proxy sees
only the encrypted tunnel. Two checks, both made before a credential is added or sent:

- ``environment_may_proxy``: the environment names a proxy for ``http://`` (``HTTP_PROXY``,
  ``http_proxy``, ``ALL_PROXY``, ``all_proxy``) and ``NO_PROXY`` does not clearly name the host,
  so an HTTP client that reads the environment (httpx's default ``trust_env``, requests) may send
  the request through it. Conservative: only ``*``, the host itself and a domain the host is under
  count in ``NO_PROXY`` (entries with a scheme, a port or a CIDR range are read differently by
  httpx and requests, so they do not).
- ``direct_only`` (httpx, including a proxy set in code on the user's client): the request's
  ``trace`` extension, which httpcore calls before it writes a request head, refuses to write a
  plain ``http://`` request that carries ``Authorization`` to a forward proxy. (A SOCKS proxy
  set in code is not seen: it is given the request like any host.)
"""

from __future__ import annotations

import ipaddress
import urllib.request
from urllib.parse import urlsplit
from typing import Any, Awaitable, Callable, Optional, Union

import httpx

from ._icr_app import TransportError

TraceHook = Callable[[str, dict[str, Any]], Any]


def refused(message: str) -> TransportError:
    """The ``TransportError`` (kind ``refused``) the core raises for what must not be sent."""
    error = TransportError(f"request failed: {message}; nothing was sent")
    error.kind = "refused"
    error.detail = message
    return error


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def environment_may_proxy(host: str) -> bool:
    """Whether the environment names a proxy that an HTTP client reading it may use for a plain
    ``http://`` request to ``host`` (see the module's notes: conservative)."""
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return False
    host = host.lower().strip("[]")
    ip = _is_ip(host)
    for entry in proxies.get("no", "").split(","):
        entry = entry.strip().lower()
        if entry == "*" or (entry and entry == host):
            return False
        if entry and not ip and "://" not in entry and ":" not in entry and "/" not in entry:
            suffix = entry if entry.startswith(".") else "." + entry
            if host.endswith(suffix):
                return False
    return True


def check_environment(url: str) -> None:
    """Raises ``refused`` if a credential on ``url`` (plain ``http://``) may go through a proxy
    the environment names."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme.lower() == "http" and environment_may_proxy(host):
        raise refused(
            f"the environment names a proxy for http:// (HTTP_PROXY or ALL_PROXY), which would read the token on "
            f"this plain http:// request for {host} in clear: add {host} to NO_PROXY (NO_PROXY={host}), use "
            "https://, or unset the proxy"
        )


def _proxied_in_clear(event: str, info: dict[str, Any]) -> bool:
    """Whether httpcore's ``event`` is about to write, to a forward proxy, the head of a plain
    ``http://`` request that carries ``Authorization``. (A request sent straight to its host has
    an origin-form target, ``/path``; through an ``https://`` proxy tunnel too. Only a forward
    proxy is given the absolute ``http://host/path``.)"""
    if not event.endswith("send_request_headers.started"):
        return False
    request = info.get("request")
    target = bytes(getattr(getattr(request, "url", None), "target", b"/"))
    if not target[:7].lower() == b"http://":
        return False
    return any(bytes(name).lower() == b"authorization" for name, _ in getattr(request, "headers", []))


def _through_a_proxy(url: httpx.URL) -> TransportError:
    host = url.host
    return refused(
        f"this HTTP client sends the plain http:// request for {host} through a proxy, which would read the "
        f"credential in clear: give the client no proxy for {host} (NO_PROXY={host}, or trust_env=False and no "
        "proxy=), or use https://"
    )


def direct_only(request: httpx.Request) -> None:
    """Makes a sync httpx client refuse to send ``request`` (plain ``http://``) through a proxy."""
    if request.url.scheme != "http":
        return
    previous: Optional[TraceHook] = request.extensions.get("trace")
    if getattr(previous, "_icr_direct_only", False):
        return
    url = request.url

    def trace(event: str, info: dict[str, Any]) -> None:
        if previous is not None:
            previous(event, info)
        if _proxied_in_clear(event, info):
            raise _through_a_proxy(url)

    trace._icr_direct_only = True  # type: ignore[attr-defined]
    request.extensions["trace"] = trace


def direct_only_async(request: httpx.Request) -> None:
    """``direct_only`` for an async httpx client (its ``trace`` callback is awaited)."""
    if request.url.scheme != "http":
        return
    previous: Optional[Callable[[str, dict[str, Any]], Union[Awaitable[None], None]]] = request.extensions.get("trace")
    if getattr(previous, "_icr_direct_only", False):
        return
    url = request.url

    async def trace(event: str, info: dict[str, Any]) -> None:
        if previous is not None:
            done = previous(event, info)
            if done is not None:
                await done
        if _proxied_in_clear(event, info):
            raise _through_a_proxy(url)

    trace._icr_direct_only = True  # type: ignore[attr-defined]
    request.extensions["trace"] = trace
