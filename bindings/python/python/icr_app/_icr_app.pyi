"""Type stubs of the Rust extension ``icr_app._icr_app`` (the SDK's core, bound with PyO3)."""

import os
from datetime import datetime
from typing import Any, Awaitable, Callable, Final, Iterable, Literal, Optional, Union

from ._stats import StatsDict

__version__: Final[str]
DEFAULT_BASE_URL: Final[str]
DEFAULT_API_VERSION: Final[str]
SIGNATURE_HEADER: Final[str]
HAS_TESTKIT: Final[bool]

TransportErrorKind = Literal["connect", "timeout", "connection_lost", "body_too_large", "refused", "cancelled", "other"]

#: What a ``Send`` is for (the core's stable names; new ones may be added).
Purpose = Literal["mint", "lookup", "call", "request", "revoke"]

class Error(Exception):
    """Every failure of the ICR App SDK; ``str(e)`` is the core's message, ``.code`` its
    stable name."""

    code: str
    """The core's stable name for the failure, to branch on: ``key``, ``signing``, ``config``,
    ``unauthorized``, ``forbidden``, ``not_found``, ``rate_limited``, ``server``,
    ``unexpected_status``, ``malformed_body``, ``transport``, ``store``, ``webhook`` or
    ``unknown_request`` (new names may be added). An exception made by hand has its class's
    (``other`` for ``Error`` itself)."""
    status: Optional[int]
    """The HTTP status it came from, if any."""
    retry_after: Optional[float]
    """The server's ``Retry-After`` in seconds, if it sent one."""

class InvalidKeyError(Error):
    """The private key could not be loaded."""

class AuthError(Error):
    """401 (credential refused) or 403 (permission missing)."""

class NotFoundError(Error):
    """404: the installation or resource does not exist (or is not visible to this app)."""

    organization_id: Optional[str]
    """Set when the 404 answered the lookup of the app's installation on this organization
    (``ByOrganization``, ``installation_for_organization``): the app is not installed there."""

class RateLimitedError(Error):
    """429, after the retries the core allows."""

class ServerError(Error):
    """5xx, after the retries the core allows."""

class TransportError(Error):
    """No response came, or the request was refused before sending."""

    kind: TransportErrorKind
    """What failed."""
    detail: str
    """The driver's description."""

class WebhookError(Error):
    """A webhook delivery was refused: answer it with 403."""

class ConfigError(Error):
    """A setting or argument is invalid."""

class ByOrganization:
    """Act as the app's installation on this organization, whatever its id: pass it wherever an
    installation id goes. Its installation is looked up once (however many ask), remembered,
    and looked up again when the registry no longer knows it (the organization reinstalled the
    app). Immutable; equal and hashing equal when the ids are; never equal to a ``str``.
    ``ConfigError`` for an id that cannot be one, ``TypeError`` for anything but a ``str``."""

    def __init__(self, organization_id: str) -> None: ...
    @property
    def organization_id(self) -> str:
        """The organization's id."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __getnewargs__(self) -> tuple[str]: ...

#: An installation: its id, or the app's installation on an organization.
InstallationRef = Union[str, ByOrganization]

class TransportPolicy:
    """What every driver enforces on every exchange."""

    @property
    def allow_insecure_http(self) -> bool:
        """Whether credentials may go over plain http:// to hosts other than loopback."""
    @property
    def max_body(self) -> int:
        """The largest response body accepted, in bytes."""
    @property
    def connect_timeout(self) -> float:
        """The longest connecting may take, in seconds."""
    @property
    def timeout(self) -> float:
        """The longest one exchange may take, in seconds."""
    def check(self, step: Send) -> Literal["direct", "proxy"]:
        """The route ``step`` may take; raises ``TransportError`` (kind ``refused``)."""
    def body_too_large(self) -> str:
        """The message of the ``body_too_large`` failure."""

#: What ``App(signer=...)`` takes: a function, or a coroutine function (``AsyncClient`` only),
#: given the bytes to sign and returning their RS256 signature (RSASSA-PKCS1-v1_5, SHA-256).
Signer = Union[Callable[[bytes], bytes], Callable[[bytes], Awaitable[bytes]]]

class App:
    """One ICR app: id, private key, settings, clock offset and token cache (the Rust core's
    ``App`` behind one mutex). Share one App between every client of the app.

    ``private_key``: the key's PEM as ``str`` or ``bytes`` (DER ``bytes`` too), or the path of
    the key file (``pathlib.Path``, any ``os.PathLike``, or a ``str`` that is no key and names a
    file). No error quotes it.

    ``signer`` instead of ``private_key``, for a key kept in a KMS or an HSM: a function given
    the bytes to sign that returns their RS256 signature (``bytes``), or a coroutine function
    (``async def``, for ``AsyncClient`` only: the blocking ``Client`` refuses it with
    ``ConfigError``). The drivers perform the core's ``Sign`` step with it: one call however
    many callers need a JWT (the others wait), about every nine minutes; ``AsyncClient`` runs a
    plain function in a worker thread. An exception it raises is every waiting caller's
    ``Error`` with ``.code == "signing"`` and the exception's type and message (its own words:
    keep credentials out of them). Exactly one of ``private_key`` and ``signer`` is given
    (``ConfigError`` otherwise). A shared store (``redis_url``) then needs ``sealing_secret``:
    at least 32 random bytes, the same in every process sharing it.

    The shared token store (``redis_url``) belongs to the App: given here or to the first
    client, every client of the App uses it; another URL for the same App raises
    ``ConfigError``."""

    def __init__(
        self,
        app_id: str,
        private_key: Union[str, bytes, os.PathLike[str], None] = None,
        base_url: Optional[str] = None,
        *,
        signer: Optional[Signer] = None,
        sealing_secret: Optional[bytes] = None,
        api_version: Optional[str] = None,
        user_agent: Optional[str] = None,
        allow_insecure_http: bool = False,
        timeout: Optional[float] = None,
        max_body: Optional[int] = None,
        retry_attempts: Optional[int] = None,
        retry_max_wait: Optional[float] = None,
        redis_url: Optional[str] = None,
        redis_timeout: Optional[float] = None,
        redis_lease_ttl: Optional[float] = None,
        proxy: Optional[str] = None,
        ca_file: Union[str, os.PathLike[str], None] = None,
    ) -> None: ...
    @property
    def proxy(self) -> Optional[str]:
        """The proxy set with ``proxy=``, as ``scheme://host:port`` (never its credentials), or
        ``None`` (the environment's ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` apply)."""
    @property
    def ca_file(self) -> Optional[str]:
        """The CA file set with ``ca_file=``, or ``None``: trusted on top of the default roots for
        the registry and an ``https://`` proxy, and as the only CA for a ``rediss://`` store."""
    def _proxy_for(self, url: str) -> Optional[str]: ...
    def _ca_files(self) -> list[str]: ...
    def _through_proxy(self, proxy_url: str, kind: str, message: str) -> str: ...
    @property
    def app_id(self) -> str:
        """The app id."""
    @property
    def base_url(self) -> str:
        """The registry's base URL."""
    @property
    def api_version(self) -> str:
        """The ``x-icr-api-version`` sent."""
    @property
    def fingerprint(self) -> Optional[str]:
        """The key's SHA-256 fingerprint (base64), as the Credentials tab shows it; ``None`` for
        an App with a ``signer`` (the key is not in this process)."""
    @property
    def signer(self) -> Optional[Signer]:
        """The ``signer`` given, or ``None`` for an App with its private key."""
    @property
    def policy(self) -> TransportPolicy:
        """The transport policy every exchange follows."""
    @property
    def clock_offset(self) -> float:
        """Server clock minus this machine's, in seconds, as learned so far."""
    @property
    def redis_url(self) -> Optional[str]:
        """The shared store's Redis URL with its password replaced by ``***``, or ``None``."""
    @property
    def changes(self) -> int:
        """The core's change counter: it moves whenever any operation on this App is reported
        to or abandoned; a ``Wait`` is over once it differs from the step's ``.change``."""
    def stats(self) -> Stats:
        """A snapshot of this App's counters in this process (shared by all its clients)."""
    def jwt(self) -> str:
        """The app JWT (RS256), cached and re-signed about a minute before it expires. With a
        ``signer``: the cached JWT, else one signed now by calling the signer in this thread
        (once however many threads ask); a coroutine-function signer raises ``ConfigError``
        unless a JWT is cached (in async code drive ``GetJwt(app)``)."""
    def invalidate(self, installation_id: Optional[InstallationRef], token: Union[Token, str]) -> bool:
        """Drops ``token`` from the cache if it is cached for that scope."""
    def _token(
        self, installation_id: Optional[InstallationRef] = None, min_life: Optional[float] = None
    ) -> Union[Token, GetToken]:
        """A cached token, or the GetToken operation to drive (already polled once)."""
    def _token_getter(self, run: Callable[[Operation], Any]) -> TokenGetter:
        """A callable serving cached tokens from Rust, handing mints to ``run``."""
    def _is_registry(self, url: str) -> bool:
        """Whether ``url`` is on the configured registry (scheme, host, port, base path)."""
    def _attach_store(
        self, url: Optional[str], timeout: Optional[float] = None, lease_ttl: Optional[float] = None
    ) -> None:
        """Shares this App's tokens through the Redis at ``url`` (nothing dialled yet); the same
        URL again does nothing, another URL or timeout raises ``ConfigError``."""

class Stats:
    """What an App has done in this process (a forked child starts from zero), counted by the
    core: the same counters as the Rust clients' ``stats()``. A snapshot; equal when every
    counter is."""

    @property
    def hits(self) -> int:
        """Tokens handed out from the process's cache without asking anyone."""
    @property
    def misses(self) -> int:
        """Token requests the cache could not answer at once (a fetch, or a wait for one)."""
    @property
    def mints(self) -> int:
        """Mint requests sent to the registry (a clock-skew resend counts again)."""
    @property
    def refreshes(self) -> int:
        """Of those, mints of a scope that still held a token (ahead of expiry, or after a refusal)."""
    @property
    def failures(self) -> dict[str, int]:
        """Failed mints by kind: ``unauthorized``, ``forbidden``, ``not_found``,
        ``rate_limited``, ``server``, ``transport``, ``malformed``, ``signing``, ``other``."""
    @property
    def waits(self) -> int:
        """Times a caller waited for a mint already in flight in this process."""
    @property
    def shared_hits(self) -> int:
        """Tokens read from the shared store (``redis_url``) instead of minted."""
    @property
    def shared_fallbacks(self) -> int:
        """Shared store failures, after which the process minted alone for a while."""
    @property
    def lookups(self) -> int:
        """Lookups of the app's installation on an organization sent to the registry."""
    @property
    def shared_lookups(self) -> int:
        """Organizations' installations read from the shared store instead of looked up."""
    def as_dict(self) -> StatsDict:
        """Every counter as a ``dict`` (for JSON or a metrics exporter)."""

class TokenGetter:
    """``Client.installation_token`` without a Python frame."""

    def __call__(self, installation_id: Optional[InstallationRef], *, min_life: Optional[float] = None) -> Token: ...
    def get(self, installation_id: Optional[InstallationRef], *, min_life: Optional[float] = None) -> Token:
        """A token for the installation (``None``: the app)."""

class Token:
    """An access token; ``repr``/``str`` never show it: read ``.token``."""

    @property
    def token(self) -> str:
        """The token (``crs_...``), for ``Authorization: Bearer``."""
    @property
    def expires_at(self) -> datetime:
        """The registry's ``expiresAt`` (aware, UTC)."""
    @property
    def expires_local(self) -> datetime:
        """When it expires on this machine's clock (aware, UTC)."""
    def remaining(self) -> float:
        """Seconds of life left now, on this machine's clock."""
    @property
    def permissions(self) -> dict[str, str]:
        """Permission name to level (``VIEW``, ``REQUEST``, ``WRITE``, ...)."""
    @property
    def installation_id(self) -> Optional[str]:
        """The installation (``None`` for an app token)."""
    @property
    def organization_id(self) -> Optional[str]:
        """The installation's organization (``None`` for an app token)."""
    @property
    def app_id(self) -> Optional[str]:
        """The app, as the registry said."""

class Organization:
    """An organization an app is installed on."""

    @property
    def id(self) -> str:
        """The organization id."""
    @property
    def name(self) -> str:
        """``fullName``, else ``name``, else the id."""
    @property
    def full_name(self) -> Optional[str]:
        """``fullName`` as sent."""
    @property
    def raw(self) -> dict[str, Any]:
        """Every field as sent."""

class Installation:
    """An installation of the app on an organization."""

    @property
    def id(self) -> str:
        """The installation id."""
    @property
    def app_id(self) -> Optional[str]:
        """The app id."""
    @property
    def organization(self) -> Optional[Organization]:
        """The organization it is installed on."""
    @property
    def permissions(self) -> dict[str, str]:
        """The permissions granted: name to level."""
    @property
    def raw(self) -> dict[str, Any]:
        """Every field as sent."""

class InstallationsPage:
    """One page of the app's installations, with the registry's pagination."""

    @property
    def installations(self) -> list[Installation]:
        """The installations on this page."""
    @property
    def total(self) -> Optional[int]:
        """How many installations there are in all, if the registry said."""
    @property
    def current_page(self) -> Optional[int]:
        """This page's number, if the registry said."""
    @property
    def page_count(self) -> Optional[int]:
        """How many pages there are, if the registry said."""
    @property
    def next_page(self) -> Optional[int]:
        """The next page's number (``None`` on the last page, or if the registry did not say)."""
    @property
    def prev_page(self) -> Optional[int]:
        """The previous page's number, if the registry said."""
    def has_more(self, limit: int, seen: int) -> bool:
        """Whether another page follows this one (asked for with ``limit``, bringing the
        installations seen so far to ``seen``), by the rule ``ListInstallations`` follows."""
    @property
    def raw(self) -> dict[str, Any]:
        """The whole page as sent (the fields the core reads)."""

class Send:
    """A step: send this request and report back for ``.id``."""

    @property
    def id(self) -> int:
        """The id to report back with."""
    @property
    def method(self) -> str:
        """``GET``, ``POST``, ..."""
    @property
    def url(self) -> str:
        """The absolute URL."""
    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header (the credential included: never log them)."""
    def header(self, name: str) -> Optional[str]:
        """The value of header ``name``."""
    @property
    def authorization(self) -> Optional[str]:
        """The ``Authorization`` header's value."""
    @property
    def body(self) -> bytes:
        """The body."""
    @property
    def purpose(self) -> Purpose:
        """What the request is for: ``mint``, ``lookup`` (an organization's installation),
        ``call`` (an app-JWT call whose answer is the result), ``request`` (a ``SendAs``'s own
        request) or ``revoke``."""
    @property
    def target(self) -> bool:
        """Whether this is a ``SendAs``'s own request (``purpose == "request"``; ``False``: a
        mint or a lookup it needs first)."""

class Store:
    """A step (only with a shared store): call ``run()`` (it blocks for at most about 300 ms,
    with the GIL released: off the event loop in async code), then report its reply with
    ``handle_store(step.id, reply)``."""

    @property
    def id(self) -> int:
        """The id to report back with."""
    @property
    def command(self) -> Literal["get", "lease", "put", "delete"]:
        """What it does."""
    @property
    def key(self) -> str:
        """The Redis key it acts on."""
    def run(self) -> StoreReply:
        """Runs the command on the App's Redis; a failure is a reply too (never raised)."""

class StoreReply:
    """What ``Store.run()`` gave, to report with ``handle_store``."""

    @property
    def ok(self) -> bool:
        """Whether the store answered."""
    @property
    def error(self) -> Optional[str]:
        """Why it gave no answer (no password shown), or ``None``."""

class Sleep:
    """A step: sleep until ``.until`` (epoch seconds), then poll again."""

    @property
    def until(self) -> float:
        """When to poll again."""

class Sign:
    """A step: sign ``.message`` with the app's key held outside this process (RS256:
    RSASSA-PKCS1-v1_5 with SHA-256) and report with ``handle_signature(id, signature=...)``, or
    ``handle_signature(id, error=...)`` when the signer failed (a message, never a credential).
    Only for an App made with ``signer=``: driving by hand, call ``app.signer(step.message)``
    (await it if it is a coroutine function; in async code run a plain one off the event loop,
    e.g. ``asyncio.to_thread``) and report what it gave. One operation is asked at a time
    however many need the JWT (the others ``Wait``): report promptly, and ``abandon()`` the
    operation if it is left, so the next one asks again."""

    @property
    def id(self) -> int:
        """The id to report back with."""
    @property
    def message(self) -> bytes:
        """The bytes to sign (the JWT's signing input)."""

class Wait:
    """A step: wait for another operation on the same App, until ``.until`` at the latest."""

    @property
    def until(self) -> float:
        """When to poll again at the latest."""
    @property
    def change(self) -> int:
        """The core's change counter of the App when the wait was decided (it moves whenever
        any operation on the App is reported to or abandoned)."""

class Done:
    """A step: finished; ``.value`` is the result."""

    @property
    def value(self) -> Any:
        """The result."""

Step = Union[Send, Store, Sign, Sleep, Wait, Done]
Header = tuple[Union[str, bytes], Union[str, bytes]]

class Operation:
    """One of the core's operations on an App, driven by polling."""

    def poll(self, now: Optional[float] = None) -> Step:
        """What to do next; raises the operation's error when it finished with one. Once it has
        finished (``Done``, its error, or ``abandon``) it raises ``ConfigError`` and does
        nothing."""
    def handle_response(
        self, id: int, status: int, headers: Iterable[Header], body: bytes, now: Optional[float] = None
    ) -> None:
        """Reports the response to request ``id`` (any status, every header); ignored once the
        operation has finished."""
    def handle_failure(self, id: int, kind: str, message: str, now: Optional[float] = None) -> None:
        """Reports that request ``id`` got no response; ignored once the operation has finished."""
    def handle_store(self, id: int, reply: StoreReply, now: Optional[float] = None) -> None:
        """Reports what the ``Store`` step ``id`` gave (a failure is no error: the core mints
        without the store for a while)."""
    def handle_signature(
        self,
        id: int,
        signature: Optional[bytes] = None,
        error: Optional[str] = None,
        now: Optional[float] = None,
    ) -> None:
        """Reports what the ``Sign`` step ``id`` gave: the RS256 ``signature``, or the signer's
        failure as ``error``; ignored once the operation has finished."""
    def abandon(self, now: Optional[float] = None) -> None:
        """Leaves the operation before ``Done``, releasing what it holds."""
    @property
    def done(self) -> bool:
        """Whether it has finished or been abandoned."""

class GetJwt(Operation):
    """The app JWT valid now, for requests you send yourself; ``Done.value`` is the JWT
    (``str``). With the private key the first poll is ``Done``; with a ``signer`` it is a
    ``Sign`` step (or a ``Wait`` while another operation's signature is in flight)."""

    def __init__(self, app: App) -> None: ...

class GetToken(Operation):
    """A token for the installation (a ``ByOrganization``: the organization's, looked up
    first if not known; ``None``: the app); ``Done.value`` is a ``Token``."""

    def __init__(
        self, app: App, installation_id: Optional[InstallationRef] = None, *, min_life: Optional[float] = None
    ) -> None: ...

class CallInstallation(Operation):
    """``GET /app/installations/{id}`` (a ``ByOrganization``:
    ``GET /app/organizations/{id}/installation``); ``Done.value`` is an ``Installation``."""

    def __init__(self, app: App, installation_id: InstallationRef) -> None: ...

class CallInstallationsPage(Operation):
    """``GET /app/installations?limit&page`` (``page`` from 0); ``Done.value`` is an
    ``InstallationsPage``."""

    def __init__(self, app: App, limit: int = 100, page: int = 0) -> None: ...

class ListInstallations(Operation):
    """Every installation; ``Done.value`` is a ``list[Installation]``."""

    def __init__(self, app: App, limit: int = 100) -> None: ...

class SendAs(Operation):
    """Any request as the installation (a ``ByOrganization``: the organization's; ``None``:
    the app)."""

    def __init__(
        self,
        app: App,
        installation_id: Optional[InstallationRef],
        method: str,
        url: str,
        *,
        headers: Optional[Iterable[tuple[str, str]]] = None,
        body: Optional[bytes] = None,
        json: bool = False,
    ) -> None: ...

class Revoke(Operation):
    """Revokes one token; ``Done.value`` is ``None``."""

    def __init__(self, app: App, token: Union[Token, str]) -> None: ...

class HandleEvent(Operation):
    """Acts on a verified webhook event: on ``uninstalled``, ``suspended`` and
    ``newPermissionsAccepted``, drops the installation's token (here and in the shared store) and
    the organization's remembered installation; ``Done.value`` is whether it dropped anything."""

    def __init__(self, app: App, event: WebhookEvent) -> None: ...

class Forget(Operation):
    """Forgets an installation (its id) or an organization (``ByOrganization``), here and in the
    shared store; ``Done.value`` is ``True``."""

    def __init__(self, app: App, installation_id: InstallationRef) -> None: ...

class RevokeAll(Operation):
    """Revokes every cached token; ``Done.value`` is how many."""

    def __init__(self, app: App) -> None: ...

class Refresher(Operation):
    """Renews cached tokens ahead of expiry; never finishes (abandon it to stop)."""

    def __init__(self, app: App) -> None: ...

class WebhookEvent:
    """A verified webhook event."""

    @property
    def kind(self) -> str:
        """``installed``, ``uninstalled``, ... or a newer kind as sent."""
    @property
    def installation_id(self) -> Optional[str]:
        """The installation it concerns."""
    @property
    def installation(self) -> Optional[Installation]:
        """The installation it concerns, if the payload has one."""
    @property
    def data(self) -> dict[str, Any]:
        """The whole signed payload."""

def verify_webhook(secret: Union[str, bytes], body: Union[bytes, str], signature: Union[str, bytes, None]) -> WebhookEvent:
    """Verifies a webhook delivery; raises ``WebhookError`` (answer 403)."""

def _after_fork_in_child() -> None: ...

class TlsFront:
    """TLS in front of a ``FakeRegistry``, with a certificate for ``host`` (default
    ``registry.test``) from a CA made on the spot: ``ca_pem`` is what a client trusts
    (``App(ca_file=...)``). Reach it through a ``ConnectProxy`` that resolves ``host`` to
    ``port``."""

    def __init__(self, registry: Union[FakeRegistry, ConnectProxy], host: str = "registry.test") -> None:
        """In front of ``registry``, or of a ``ConnectProxy`` (a proxy spoken to over TLS, for
        ``host`` ``127.0.0.1``)."""
    @property
    def ca_pem(self) -> str:
        """The CA's certificate (PEM)."""
    @property
    def port(self) -> int:
        """The port it listens on, on ``127.0.0.1``."""
    def close(self) -> None:
        """Stops it."""
    def __enter__(self) -> TlsFront: ...
    def __exit__(self, *args: object) -> bool: ...

class ConnectProxy:
    """A forward proxy on ``127.0.0.1`` for tests: tunnels ``CONNECT host:port``, forwards
    absolute-form requests, logs each request line, keeps the first bytes of each tunnel,
    resolves the names of ``resolve`` (to ``127.0.0.1:port``) and otherwise only IP addresses
    and ``localhost``; with ``user`` and ``password`` it requires Basic credentials (407), with
    ``forbid`` it refuses everything (403)."""

    def __init__(
        self,
        resolve: Optional[dict[str, int]] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        forbid: bool = False,
    ) -> None: ...
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
    def url_with_credentials(self, user: str, password: str) -> str:
        """``http://user:password@127.0.0.1:PORT``."""
    def request_lines(self) -> list[str]:
        """Every request line seen, e.g. ``CONNECT registry.test:443 HTTP/1.1``."""
    def tunneled(self) -> list[bytes]:
        """The first bytes (up to 64 KiB) each client sent into a tunnel."""
    def clear(self) -> None:
        """Forgets what it saw."""
    def close(self) -> None:
        """Stops it."""
    def __enter__(self) -> ConnectProxy: ...
    def __exit__(self, *args: object) -> bool: ...

class FakeRegistry:
    """A fake ICR registry on ``http://127.0.0.1:PORT``, for tests."""

    DEMO_PRIVATE_KEY_PEM: Final[str]
    app_id: Optional[str]
    private_key_pem: Optional[str]
    installation_ids: list[str]
    """The demo installations, as ``demo()`` made them."""
    organization_ids: list[str]
    """The organization of each demo installation, in the same order."""
    webhook_secret: Optional[str]

    def __init__(self) -> None: ...
    @staticmethod
    def demo() -> FakeRegistry:
        """A registry with the demo app and three installations."""
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
    def close(self) -> None:
        """Stops the registry."""
    def __enter__(self) -> FakeRegistry: ...
    def __exit__(self, *args: object) -> bool: ...
    def register_app(self, app_id: str, public_key_pem: str) -> None:
        """Registers an app with its RSA public key PEM."""
    def register_app_with_private_key(self, app_id: str, private_key_pem: str) -> None:
        """Registers an app, deriving its public key from the private key."""
    def add_installation(
        self, app_id: str, organization_name: str, permissions: Optional[Iterable[tuple[str, str]]] = None
    ) -> str:
        """Installs the app on a new organization; returns the installation id."""
    def remove_installation(self, installation_id: str) -> None:
        """Uninstalls."""
    def organization_id(self, installation_id: str) -> Optional[str]:
        """The organization id of an installation."""
    def reinstall(self, organization_id: str) -> str:
        """The organization reinstalls the app: its installation's new id (the old id answers
        404, its tokens 401). ``ValueError`` when no installation of this registry is on it."""
    def lookup_count(self, organization_id: str) -> int:
        """How many times the app's installation on the organization was looked up."""
    def set_clock_offset(self, seconds: int) -> None:
        """The registry's clock: real time plus ``seconds``."""
    def advance_clock(self, seconds: int) -> None:
        """Moves the registry's clock."""
    def set_token_lifetime(self, seconds: float) -> None:
        """How long new tokens live."""
    def inject_status(
        self, status: int, *, retry_after: Optional[int] = None, times: int = 1, path_prefix: Optional[str] = None
    ) -> None:
        """Answers the next requests with ``status``."""
    def inject_drop_connection(self, *, times: int = 1, path_prefix: Optional[str] = None) -> None:
        """Closes the next connections without answering."""
    def inject_delay(self, seconds: float, *, times: int = 1, path_prefix: Optional[str] = None) -> None:
        """Answers the next requests late."""
    def inject_malformed_body(self, *, times: int = 1, path_prefix: Optional[str] = None) -> None:
        """Answers the next requests 200 with a body that is not JSON."""
    def inject_redirect(
        self, location: str, *, status: int = 302, times: int = 1, path_prefix: Optional[str] = None
    ) -> None:
        """Answers the next requests with a redirect."""
    def clear_faults(self) -> None:
        """Drops every queued fault."""
    def set_fault_rates(
        self,
        *,
        server_error: float = 0.0,
        drop_connection: float = 0.0,
        malformed_body: float = 0.0,
        retry_after: float = 0.0,
        retry_after_secs: int = 1,
        delay: float = 0.0,
        max_delay: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Injects faults at random into every request."""
    def clear_fault_rates(self) -> None:
        """Stops injecting random faults."""
    def requests(self) -> list[dict[str, Any]]:
        """Every request received so far."""
    def clear_requests(self) -> None:
        """Forgets the recorded requests."""
    def mint_count(self, installation_id: str) -> int:
        """How many tokens were minted for the installation."""
    def app_token_mint_count(self) -> int:
        """How many app tokens were minted."""
    def revoke_all_tokens(self) -> None:
        """Revokes every token issued so far."""
    def expire_token(self, token: Union[Token, str]) -> None:
        """Makes ``token`` expire now."""
    def token_status(self, token: Union[Token, str]) -> Literal["valid", "expired", "revoked", "unknown"]:
        """What the registry thinks of ``token`` now."""
    def token_is_valid(self, token: Union[Token, str]) -> bool:
        """Whether the registry accepts ``token`` now."""
    def webhook_delivery(self, secret: str, event: str, installation_id: str) -> tuple[bytes, str]:
        """A webhook delivery as ICR sends it: ``(body, signature_header)``."""
