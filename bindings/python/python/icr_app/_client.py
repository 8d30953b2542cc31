"""``Client`` (blocking, over httpx.Client) and ``AsyncClient`` (asyncio, over httpx.AsyncClient)."""

from __future__ import annotations

import json as _json
from types import TracebackType
from typing import Any, Iterable, Optional, Tuple, Type, Union

import httpx

from ._drive import AsyncDriver, SyncDriver, refuse_async_signer
from ._icr_app import (
    App,
    ByOrganization,
    CallInstallation,
    Forget,
    HandleEvent,
    Installation,
    ListInstallations,
    Revoke,
    RevokeAll,
    SendAs,
    Stats,
    Token,
    WebhookEvent,
)

Headers = Optional[Iterable[Tuple[str, str]]]

#: Who acts: an installation (its id), or whatever installation the app has on an organization.
InstallationRef = Union[str, ByOrganization]


def _check_scope(installation_id: object, what: str) -> None:
    """A ``TypeError`` now, rather than at the first request, for an ``installation_id`` that
    is neither an id, a ``ByOrganization`` nor ``None``."""
    if installation_id is not None and not isinstance(installation_id, (str, ByOrganization)):
        raise TypeError(
            f"{what}: installation_id must be an installation id (str), an icr_app.ByOrganization, "
            f"or None (the app), not {type(installation_id).__name__}"
        )


def _body(json: Any, content: Optional[bytes]) -> Optional[bytes]:
    if json is not None and content is not None:
        raise TypeError("pass json= or content=, not both")
    if json is not None:
        return _json.dumps(json, separators=(",", ":")).encode()
    return content


def _headers(headers: Any) -> Optional[list[tuple[str, str]]]:
    if headers is None:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), str(v)) for k, v in items]


class Client:
    """A blocking ICR app client over ``httpx``.

    Every decision (one mint per installation however many threads ask, refresh ahead of expiry,
    clock-skew correction, retries with back-off and ``Retry-After``, error messages) is made by
    the Rust core; this client only sends, sleeps and waits. Safe to share between threads.

    ``http_client``: an ``httpx.Client`` to send with, used exactly as given (its proxies,
    transport, timeouts, event hooks); it is not closed by ``close()``. Without one, the client
    makes its own (the environment's proxies, as httpx reads them, for ``https``; loopback and
    plain ``http`` never through a proxy; the policy's timeouts) and closes it in ``close()``.
    Either way no redirect is followed and bodies are capped (``App(max_body=...)``).

    ``redis_url``: share tokens with every process on that Redis
    (``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS,
    ``unix:///path/to/redis.sock``; a Redis Cluster:
    ``redis+cluster://[user:password@]host:port[,host:port...]``; a primary under Sentinel:
    ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/DB]``;
    ``rediss+cluster://`` and ``rediss+sentinel://`` for TLS, trusting ``App(ca_file=...)``
    when given): on a local miss the client reads the shared entry, one
    process mints per installation and the others read its token (sealed with a key derived from
    the app's private key). Nothing is dialled here; Redis down, slow or refusing costs no error
    (each command gives up within ``redis_timeout`` seconds, default 0.3, then the client mints
    on its own for a while, logging one warning per outage). The store belongs to the App: every
    client of the App then uses it, with or without ``redis_url``; another URL (or another
    ``redis_timeout``) for the same App raises ``ConfigError``, as does a URL that is not a Redis
    URL (its message never shows a password). ``redis_lease_ttl``: how long, in seconds, a lease
    to mint lasts (default 15): if the process holding it dies, another mints after this.
    """

    def __init__(
        self,
        app: App,
        *,
        http_client: Optional[httpx.Client] = None,
        redis_url: Optional[str] = None,
        redis_timeout: Optional[float] = None,
        redis_lease_ttl: Optional[float] = None,
    ) -> None:
        self._app = app
        self._driver = SyncDriver(app, http_client)
        refuse_async_signer(app)
        if redis_url is not None or redis_timeout is not None or redis_lease_ttl is not None:
            app._attach_store(redis_url, redis_timeout, redis_lease_ttl)
        # The hot path without a Python frame: a cached token comes straight from Rust; a mint
        # is driven by this client's loop. (Same behaviour as the method below, which it shadows.)
        self.__dict__["installation_token"] = app._token_getter(self._driver.run).get

    @property
    def app(self) -> App:
        """The App this client drives."""
        return self._app

    def installation_token(self, installation_id: InstallationRef, *, min_life: Optional[float] = None) -> Token:
        """An installation access token with at least ``min_life`` seconds left (default 60),
        from the cache or minted (once, however many threads ask). ``installation_id``: the
        installation's id, or ``ByOrganization(organization_id)`` for the app's installation on
        that organization (looked up once, however many threads ask)."""
        found = self._app._token(installation_id, min_life)
        if isinstance(found, Token):
            return found
        token: Token = self._driver.run(found)
        return token

    def app_token(self, *, min_life: Optional[float] = None) -> Token:
        """An app access token (``POST /app/accessTokens``), cached like installation tokens."""
        found = self._app._token(None, min_life)
        if isinstance(found, Token):
            return found
        token: Token = self._driver.run(found)
        return token

    def jwt(self) -> str:
        """The app JWT (cached; re-signed about a minute before it expires): ``App.jwt()``."""
        return self._app.jwt()

    def stats(self) -> Stats:
        """A snapshot of the App's counters in this process (hits, misses, mints, refreshes,
        failures by kind, waits, shared hits and fallbacks), shared by every client of the App."""
        return self._app.stats()

    def installations(self) -> list[Installation]:
        """Every installation of the app, following every page."""
        found: list[Installation] = self._driver.run(ListInstallations(self._app))
        return found

    def installation(self, installation_id: InstallationRef) -> Installation:
        """One installation (also how to check an ``installationId`` from a callback URL); with
        ``ByOrganization(organization_id)``, as ``installation_for_organization``."""
        found: Installation = self._driver.run(CallInstallation(self._app, installation_id))
        return found

    def installation_for_organization(self, organization_id: str) -> Installation:
        """The app's installation on the organization
        (``GET /app/organizations/{id}/installation``), remembered for it: a token asked for
        ``ByOrganization(organization_id)`` then needs no lookup. An organization without the
        app raises ``NotFoundError`` saying so (its ``.organization_id`` set)."""
        found: Installation = self._driver.run(CallInstallation(self._app, ByOrganization(organization_id)))
        return found

    def get_json(self, installation_id: Optional[InstallationRef], path: str) -> Any:
        """``GET path`` (relative to the base URL) as the installation (a ``ByOrganization``:
        the organization's; ``None``: the app), parsed as JSON; a non-2xx status raises its
        ``icr_app.Error``."""
        return self._driver.run(SendAs(self._app, installation_id, "GET", path, json=True))

    def request(
        self,
        installation_id: Optional[InstallationRef],
        method: str,
        path: str,
        *,
        json: Any = None,
        content: Optional[bytes] = None,
        headers: Any = None,
    ) -> httpx.Response:
        """Sends ``method path`` (relative to the base URL) as the installation (a
        ``ByOrganization``: the organization's; ``None``: the app), with a JSON body from
        ``json`` or raw ``content``, and returns the response whatever its status (read in full).
        A 401 drops the token, mints a new one and sends once more (by organization, a mint
        answered 404, the installation gone, looks the organization up again first)."""
        op = SendAs(self._app, installation_id, method, path, headers=_headers(headers), body=_body(json, content))
        _, response = self._driver.drive(op)
        if response is None:  # pragma: no cover - the core finishes a SendAs only after its response
            raise RuntimeError("the request finished without a response")
        return response

    def handle_event(self, event: WebhookEvent) -> bool:
        """Acts on a verified webhook event (``verify_webhook``'s): on ``uninstalled``,
        ``suspended`` and ``newPermissionsAccepted``, drops the installation's token in this
        process and in the shared store (whatever token the store holds), and the
        organization's remembered installation; the next call mints anew. Returns whether the
        event dropped anything (``False`` for every other event)."""
        forgot: bool = self._driver.run(HandleEvent(self._app, event))
        return forgot

    def forget(self, installation_id: InstallationRef) -> None:
        """Forgets an installation (its id: its token) or an organization
        (``ByOrganization(id)``: its remembered installation and that one's token), here and in
        the shared store, as ``handle_event`` does for ``uninstalled``."""
        self._driver.run(Forget(self._app, installation_id))

    def revoke(self, token: Token | str) -> None:
        """Revokes ``token`` (``DELETE /app/installations/token``) and drops it from the cache."""
        self._driver.run(Revoke(self._app, token))

    def revoke_all(self) -> int:
        """Revokes every cached token (waiting for mints in flight) and empties the cache;
        returns how many were revoked. A token the registry already refuses (401: expired,
        revoked elsewhere, its installation removed) is dropped without counting and is no
        failure; any other failure is raised after all were tried."""
        count: int = self._driver.run(RevokeAll(self._app))
        return count

    def close(self) -> None:
        """Closes the HTTP clients this client made (not one handed in)."""
        self._driver.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"icr_app.Client({self._app!r})"


class AsyncClient:
    """An asyncio ICR app client over ``httpx.AsyncClient``: the methods of ``Client``,
    awaited. Safe to share between the tasks of an event loop (one mint per installation
    however many tasks ask), and between loops and threads through one ``App``.

    ``http_client``: an ``httpx.AsyncClient``, used exactly as given and not closed by
    ``aclose()``; without one, the client makes its own as ``Client`` does.

    ``redis_url``: share tokens with every process on that Redis, as for ``Client``; the Redis
    commands run in a worker thread (``asyncio.to_thread``), never on the event loop.
    """

    def __init__(
        self,
        app: App,
        *,
        http_client: Optional[httpx.AsyncClient] = None,
        redis_url: Optional[str] = None,
        redis_timeout: Optional[float] = None,
        redis_lease_ttl: Optional[float] = None,
    ) -> None:
        self._app = app
        self._driver = AsyncDriver(app, http_client)
        if redis_url is not None or redis_timeout is not None or redis_lease_ttl is not None:
            app._attach_store(redis_url, redis_timeout, redis_lease_ttl)

    @property
    def app(self) -> App:
        """The App this client drives."""
        return self._app

    async def installation_token(self, installation_id: InstallationRef, *, min_life: Optional[float] = None) -> Token:
        """An installation access token with at least ``min_life`` seconds left (default 60);
        ``installation_id`` as for ``Client.installation_token``."""
        found = self._app._token(installation_id, min_life)
        if isinstance(found, Token):
            return found
        token: Token = await self._driver.run(found)
        return token

    async def app_token(self, *, min_life: Optional[float] = None) -> Token:
        """An app access token, cached like installation tokens."""
        found = self._app._token(None, min_life)
        if isinstance(found, Token):
            return found
        token: Token = await self._driver.run(found)
        return token

    def jwt(self) -> str:
        """The app JWT (cached; signing takes about a millisecond, so this is not awaited):
        ``App.jwt()``. With an App's ``signer``, the JWT the client's calls had signed while it
        is valid; else a plain signer is called in this thread, and a coroutine-function one
        raises ``ConfigError`` (drive ``GetJwt(app)`` instead)."""
        return self._app.jwt()

    def stats(self) -> Stats:
        """A snapshot of the App's counters in this process, as ``Client.stats`` (not awaited)."""
        return self._app.stats()

    async def installations(self) -> list[Installation]:
        """Every installation of the app, following every page."""
        found: list[Installation] = await self._driver.run(ListInstallations(self._app))
        return found

    async def installation(self, installation_id: InstallationRef) -> Installation:
        """One installation (with ``ByOrganization``, as ``installation_for_organization``)."""
        found: Installation = await self._driver.run(CallInstallation(self._app, installation_id))
        return found

    async def installation_for_organization(self, organization_id: str) -> Installation:
        """The app's installation on the organization, remembered for it; see
        ``Client.installation_for_organization``."""
        found: Installation = await self._driver.run(CallInstallation(self._app, ByOrganization(organization_id)))
        return found

    async def get_json(self, installation_id: Optional[InstallationRef], path: str) -> Any:
        """``GET path`` as the installation (a ``ByOrganization``: the organization's;
        ``None``: the app), parsed as JSON."""
        return await self._driver.run(SendAs(self._app, installation_id, "GET", path, json=True))

    async def request(
        self,
        installation_id: Optional[InstallationRef],
        method: str,
        path: str,
        *,
        json: Any = None,
        content: Optional[bytes] = None,
        headers: Any = None,
    ) -> httpx.Response:
        """Sends ``method path`` as the installation and returns the response, whatever its
        status (read in full); see ``Client.request``."""
        op = SendAs(self._app, installation_id, method, path, headers=_headers(headers), body=_body(json, content))
        _, response = await self._driver.drive(op)
        if response is None:  # pragma: no cover
            raise RuntimeError("the request finished without a response")
        return response

    async def handle_event(self, event: WebhookEvent) -> bool:
        """Acts on a verified webhook event; see ``Client.handle_event``."""
        forgot: bool = await self._driver.run(HandleEvent(self._app, event))
        return forgot

    async def forget(self, installation_id: InstallationRef) -> None:
        """Forgets an installation or an organization; see ``Client.forget``."""
        await self._driver.run(Forget(self._app, installation_id))

    async def revoke(self, token: Token | str) -> None:
        """Revokes ``token`` and drops it from the cache."""
        await self._driver.run(Revoke(self._app, token))

    async def revoke_all(self) -> int:
        """Revokes every cached token; returns how many were revoked (as
        :meth:`Client.revoke_all`: a token already refused with 401 is not counted)."""
        count: int = await self._driver.run(RevokeAll(self._app))
        return count

    async def aclose(self) -> None:
        """Closes the HTTP clients this client made (not one handed in)."""
        await self._driver.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"icr_app.AsyncClient({self._app!r})"
