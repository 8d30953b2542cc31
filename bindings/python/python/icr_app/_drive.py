"""The two driving loops: they perform what each operation asks (send, run a shared store
command, sleep, wait) and report back. Every decision is the Rust core's; these only perform
effects, over httpx (and the extension's Redis store for ``Store`` steps).

Every exchange on a client this package makes holds the policy's timeout as a whole (connect,
request, response headers and body): the async loop bounds it with ``asyncio.wait_for``; the
sync loop's httpx client reads and writes through a network backend that gives each socket
operation at most the time left until the exchange's deadline. A client handed in keeps its own
timeouts.

Each loop is the core's canonical one (``core/src/lib.rs``, "Driving the core yourself"), as in
``transport-ureq/src/drive.rs`` (sync) and ``transport-reqwest/src/drive.rs`` (async): poll, then
send (after the transport policy's check, following no redirect, with the body capped), sleep, or
wait on the App's change signal, or run a ``Store`` step (``step.run()``: the command runs on
Redis in Rust, with the GIL released; the async loop runs it in a worker thread so the event
loop never blocks), or a ``Sign`` step (an App made with ``signer=``: the blocking loop calls the
signer; the async loop awaits a coroutine-function signer and runs a plain one in a worker
thread); report every answer; notify after every report; abandon on
every way out before ``Done`` (an exception, ``KeyboardInterrupt``, a cancelled task, a closed
generator).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Optional, Tuple, Type, Union
from urllib.parse import urlsplit

import httpcore
import httpx

from . import _proxies
from ._icr_app import App, ConfigError, Done, Operation, Send, Sign, Store, StoreReply, TransportError, Wait
from ._signal import fork_state, signal_of

if TYPE_CHECKING:
    from ._icr_app import Step as Polled

_log = logging.getLogger("icr_app")

#: What a driver reports for a ``Sign`` step it cannot perform.
_NO_SIGNER = "this App has no signer to sign its JWT with; give it its private key"

#: Why the blocking driver refuses a coroutine-function signer.
_ASYNC_SIGNER = (
    "this App's signer is a coroutine function (async def), which the blocking icr_app.Client cannot await: "
    "use icr_app.AsyncClient, or give App(signer=...) a plain function"
)


def is_async_signer(signer: Any) -> bool:
    """Whether ``signer`` is a coroutine function (or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(signer) or inspect.iscoroutinefunction(getattr(signer, "__call__", None))


def refuse_async_signer(app: App) -> None:
    """``ConfigError`` when ``app``'s signer is a coroutine function (for the blocking client)."""
    if is_async_signer(app.signer):
        raise ConfigError(f"invalid signer: {_ASYNC_SIGNER}")


def jwt_with_signer(app: App, op: Operation) -> str:
    """``App.jwt()`` for an App with a signer and no JWT valid now: drives ``op`` (a ``GetJwt``)
    with the blocking loop, which calls the signer in this thread."""
    if is_async_signer(app.signer):
        op.abandon()
        raise ConfigError(
            "invalid signer: App.jwt() cannot await this App's signer, a coroutine function (async def), and no JWT "
            "signed earlier is valid now: in async code drive icr_app.GetJwt(app), awaiting the signer on its Sign step "
            "(README: Keys in a KMS or an HSM)"
        )
    jwt: str = SyncDriver(app, None).run(op)
    return jwt


def _signature(value: Any) -> bytes:
    """The signer's answer as ``bytes``; ``TypeError`` for anything else."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"the signer returned {type(value).__name__}, not the signature as bytes")


def _signer_failed(exc: Exception) -> str:
    """What is reported for a signer that raised: its exception's type and message (the
    signer's own words: it must not put a credential there)."""
    return f"{type(exc).__name__}: {exc}"

Step = Union[Send, Done]


class _Refusal(Exception):
    """A failure of the exchange itself, reported to the operation as ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _failure(exc: BaseException) -> tuple[str, str]:
    """The core's transport error kind for an httpx failure, and a description (no credential:
    httpx's messages carry no header)."""
    if isinstance(exc, _Refusal):
        return exc.kind, exc.message
    if isinstance(exc, TransportError):
        return exc.kind, exc.detail
    if isinstance(exc, httpx.TimeoutException):
        kind = "timeout"
    elif isinstance(exc, (httpx.ConnectError, httpx.ProxyError)):
        kind = "connect"
    elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        kind = "connection_lost"
    elif isinstance(exc, httpx.UnsupportedProtocol):
        kind = "refused"
    else:
        kind = "other"
    text = str(exc) or type(exc).__name__
    return kind, f"{type(exc).__name__}: {text}"


#: The monotonic deadline of the exchange the current thread is making (sync driver).
_deadline: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar("icr_app_deadline", default=None)


def _bounded(timeout: Optional[float], expired: Type[Exception]) -> Optional[float]:
    """``timeout`` cut to the time left until the current exchange's deadline; raises
    ``expired`` once it has passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the exchange's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: Optional[str] = None, timeout: Optional[float] = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with ``_DeadlineStream``s."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[Any]] = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: Optional[float] = None, socket_options: Optional[Iterable[Any]] = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _hold_deadlines(client: httpx.Client) -> None:
    """Puts ``_DeadlineBackend`` under every connection pool of ``client`` (one this package
    made: its default transport and the environment's proxy transports). httpx has no public
    way to choose httpcore's network backend, so this sets the pools' backend attribute; if an
    httpx or httpcore release changes that, each read is bounded by the timeout, not the
    exchange, and a warning says so."""
    transports = [client._transport, *client._mounts.values()]  # noqa: SLF001
    for transport in transports:
        if transport is None:
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            _log.warning(
                "this httpx/httpcore version does not let icr_app bound a whole exchange by App(timeout=...): "
                "each read is bounded instead; a server that answers very slowly can hold a call longer"
            )
            return
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


def _proxy(url: Optional[str], verify: Union[bool, ssl.SSLContext]) -> Union[None, str, httpx.Proxy]:
    """httpx's ``proxy`` for ``url``: an ``https://`` proxy is verified with the same roots as the
    registry (``ca_file``, ``SSL_CERT_FILE``); httpx would otherwise use its defaults for it."""
    if url is not None and url.lower().startswith("https://") and isinstance(verify, ssl.SSLContext):
        return httpx.Proxy(url, ssl_context=verify)
    return url


def _sleep_until(until: float) -> None:
    delay = until - time.time()
    if delay > 0:
        time.sleep(delay)


def _log_exchange(step: Send, status: int, started: float) -> None:
    if _log.isEnabledFor(logging.DEBUG):
        took = (time.monotonic() - started) * 1000.0
        _log.debug("request %s %s -> %s in %.1f ms", step.method, urlsplit(step.url).path, status, took)


class _Base:
    """What both drivers share: the App, its policy and signal, and the HTTP clients."""

    def __init__(self, app: App, http_client: Any) -> None:
        if not isinstance(app, App):
            raise TypeError("app must be an icr_app.App")
        self.app = app
        self.policy = app.policy
        self.signal = signal_of(app)
        self.user_client = http_client
        self.owned: dict[tuple[str, Optional[str]], Any] = {}
        self.ssl_context: Optional[ssl.SSLContext] = None
        self.epoch = fork_state.epoch
        self.closed = False
        self.lock = threading.Lock()

    def deadline(self, started: float) -> Optional[float]:
        # The policy's whole-exchange limit applies to the clients this package makes; a client
        # handed in keeps its own timeouts.
        return None if self.user_client is not None else started + self.policy.timeout

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.policy.timeout, connect=self.policy.connect_timeout)

    def timed_out(self) -> _Refusal:
        """The failure of an exchange that outlived the policy's timeout."""
        return _Refusal(
            "timeout",
            f"no complete answer within {self.policy.timeout:g} s, the timeout for one exchange (App(timeout=...))",
        )

    def guard(self, client: Any, route: str, request: httpx.Request) -> None:
        """A client handed in may have a proxy, which must never see a credential in clear:
        a ``direct`` request (loopback, plain http) is refused before it goes to one."""
        if route == "direct" and client is self.user_client:
            if isinstance(client, httpx.AsyncClient):
                _proxies.direct_only_async(request)
            else:
                _proxies.direct_only(request)

    def proxy_for(self, route: str, url: str) -> Optional[str]:
        """The proxy the package's own client uses for ``url`` (credentials included: for httpx
        only), by the one rule of every driver (the core's ``Proxies``: ``App(proxy=...)``, else
        the environment's ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` as they
        are now); ``None`` for a direct route or a client handed in (which keeps its own)."""
        if route != "proxy" or self.user_client is not None:
            return None
        try:
            return self.app._proxy_for(url)
        except ConfigError as error:
            # A proxy variable that names no usable proxy: this request fails, saying so.
            raise _Refusal("refused", str(error)) from None

    def verify(self) -> Union[bool, ssl.SSLContext]:
        """httpx's ``verify`` for the package's own clients: the default roots, plus
        ``App(ca_file=...)`` and ``SSL_CERT_FILE`` when set. (The clients are made with
        ``trust_env=False``, proxies and CA files being given explicitly, so that nothing the
        package configures drops what the environment says.)"""
        files = self.app._ca_files()
        if not files:
            return True
        if self.ssl_context is None:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
            for path in files:
                context.load_verify_locations(cafile=str(path))
            self.ssl_context = context
        return self.ssl_context

    def through_proxy(self, proxy: Optional[str], kind: str, message: str) -> str:
        """``message`` naming the proxy the exchange went through (never its credentials)."""
        return message if proxy is None else self.app._through_proxy(proxy, kind, message)

    def client_for(self, route: str, proxy: Optional[str] = None) -> Any:
        if self.user_client is not None:
            return self.user_client
        if self.closed:
            raise RuntimeError("this icr_app client is closed")
        if self.epoch != fork_state.epoch:
            # The child of a fork: the parent's connections are not ours to use (nor to close).
            self.owned = {}
            self.lock = threading.Lock()
            self.epoch = fork_state.epoch
        key = (route, proxy)
        client = self.owned.get(key)
        if client is None:
            with self.lock:
                client = self.owned.get(key)
                if client is None:
                    client = self.owned[key] = self.make_client(route, proxy)
        return client

    def make_client(self, route: str, proxy: Optional[str]) -> Any:
        raise NotImplementedError

    def check(self, op: Operation, step: Send) -> Optional[str]:
        """The policy's route for ``step``, or ``None`` after reporting its refusal."""
        try:
            return self.policy.check(step)
        except TransportError as refused:
            op.handle_failure(step.id, refused.kind, refused.detail)
            return None

    def report(self, op: Operation, step: Send, status: int, headers: Any, body: bytes = b"") -> None:
        """Reports a response to ``step`` that someone else received (an auth flow's)."""
        try:
            op.handle_response(step.id, status, headers, body)
        finally:
            self.signal.notify()

    def stored(self, op: Operation, step: Store, reply: StoreReply) -> None:
        """Reports the shared store's reply to ``step`` (a failure included: the core then mints
        without the store for a while), and wakes the waiters."""
        try:
            op.handle_store(step.id, reply)
        finally:
            self.signal.notify()

    def signed(self, op: Operation, step: Sign, signature: Optional[bytes], error: Optional[str]) -> None:
        """Reports the signature for ``step`` (or why there is none), and wakes the waiters."""
        try:
            if error is None:
                op.handle_signature(step.id, signature=signature)
            else:
                op.handle_signature(step.id, error=error)
        finally:
            self.signal.notify()

    def poll(self, op: Operation) -> Polled:
        """Polls ``op``; a poll that ended something other operations wait for (a mint that
        failed in it, say: the App's change counter moved) wakes them, as a report does, whether
        it returned a step or raised the operation's error."""
        before = self.app.changes
        try:
            return op.poll()
        finally:
            # Also when the poll raised: an operation that finished with an error (a signing
            # that failed, reported to another operation) releases the mint others wait for.
            if self.app.changes != before:
                self.signal.notify()

    def release(self, op: Operation) -> None:
        """Abandons ``op`` unless it is done, and wakes the waiters."""
        if not op.done:
            try:
                op.abandon()
            finally:
                self.signal.notify()


class SyncDriver(_Base):
    """The blocking loop, over an ``httpx.Client``."""

    def make_client(self, route: str, proxy: Optional[str]) -> httpx.Client:
        # "direct" (loopback, plain http): never through a proxy; "proxy": the proxy the core's
        # rule chose for the URL (from App(proxy=...) or the environment), given explicitly.
        verify = self.verify()
        client = httpx.Client(
            trust_env=False, proxy=_proxy(proxy, verify), verify=verify, timeout=self.timeout(), follow_redirects=False
        )
        _hold_deadlines(client)
        return client

    def close(self) -> None:
        self.closed = True
        owned, self.owned = self.owned, {}
        for client in owned.values():
            client.close()

    def exchange(self, op: Operation, step: Send) -> Optional[httpx.Response]:
        """Sends ``step`` and reports the outcome to ``op``; then wakes the waiters."""
        try:
            route = self.check(op, step)
            if route is None:
                return None
            started = time.monotonic()
            proxy = None
            try:
                proxy = self.proxy_for(route, step.url)
                response = self.send(self.client_for(route, proxy), route, step, started)
            except (httpx.HTTPError, _Refusal, TransportError) as exc:
                kind, message = _failure(exc)
                message = self.through_proxy(proxy, kind, message)
                _log.debug("request %s %s failed: %s", step.method, urlsplit(step.url).path, message)
                op.handle_failure(step.id, kind, message)
                return None
            _log_exchange(step, response.status_code, started)
            op.handle_response(step.id, response.status_code, response.headers.raw, response.content)
            return response
        finally:
            self.signal.notify()

    def send(self, client: httpx.Client, route: str, step: Send, started: float) -> httpx.Response:
        deadline = self.deadline(started)
        bound = _deadline.set(deadline)
        try:
            return self.receive(client, route, step, deadline)
        except httpx.TimeoutException:
            if deadline is not None and time.monotonic() >= deadline - 0.01:
                raise self.timed_out() from None
            raise
        finally:
            _deadline.reset(bound)

    def receive(self, client: httpx.Client, route: str, step: Send, deadline: Optional[float]) -> httpx.Response:
        body = step.body
        request = client.build_request(step.method, step.url, headers=step.headers, content=body or None)
        self.guard(client, route, request)
        response = client.send(request, stream=True, follow_redirects=False, auth=None)
        cap = self.policy.max_body
        try:
            content = bytearray()
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) > cap:
                    raise _Refusal("body_too_large", self.policy.body_too_large())
                if deadline is not None and time.monotonic() > deadline:
                    raise self.timed_out()
        finally:
            response.close()
        response._content = bytes(content)
        return response

    def advance(self, op: Operation) -> Step:
        """Polls ``op`` and performs its steps until it is done (``Done``) or asks to send its
        target request (a ``Send`` with ``.target``), which is returned unsent."""
        signal = self.signal
        while True:
            seen = signal.gen
            step = self.poll(op)
            if isinstance(step, Send):
                if step.target:
                    return step
                self.exchange(op, step)
            elif isinstance(step, Store):
                self.stored(op, step, step.run())
            elif isinstance(step, Done):
                return step
            elif isinstance(step, Wait):
                signal.wait(seen, step.until)
            elif isinstance(step, Sign):
                self.sign(op, step)
            else:
                _sleep_until(step.until)

    def sign(self, op: Operation, step: Sign) -> None:
        """Performs ``step`` (only an App made with ``signer=`` asks): calls the signer in this
        thread (once however many threads need the JWT: the others ``Wait``) and reports its
        signature, or its exception as the signing failure; then wakes the waiters. A
        coroutine-function signer raises ``ConfigError`` (the operation is then abandoned)."""
        signer = self.app.signer
        if signer is None:
            self.signed(op, step, None, _NO_SIGNER)
            return
        if is_async_signer(signer):
            raise ConfigError(f"invalid signer: {_ASYNC_SIGNER}")
        try:
            answer = signer(step.message)
            if inspect.isawaitable(answer):
                if inspect.iscoroutine(answer):
                    answer.close()
                raise ConfigError(f"invalid signer: {_ASYNC_SIGNER}")
            signature = _signature(answer)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the signer is the signing's failure
            self.signed(op, step, None, _signer_failed(exc))
            return
        self.signed(op, step, signature, None)

    def drive(self, op: Operation) -> Tuple[Any, Optional[httpx.Response]]:
        """Drives ``op`` to the end: its value, and the response to its target request."""
        last: Optional[httpx.Response] = None
        try:
            while True:
                step = self.advance(op)
                if isinstance(step, Done):
                    return step.value, last
                last = self.exchange(op, step)
        finally:
            self.release(op)

    def run(self, op: Operation) -> Any:
        """Drives ``op`` to the end and returns its value."""
        return self.drive(op)[0]


class AsyncDriver(_Base):
    """The asyncio loop, over an ``httpx.AsyncClient``."""

    def make_client(self, route: str, proxy: Optional[str]) -> httpx.AsyncClient:
        verify = self.verify()
        return httpx.AsyncClient(
            trust_env=False, proxy=_proxy(proxy, verify), verify=verify, timeout=self.timeout(), follow_redirects=False
        )

    async def aclose(self) -> None:
        self.closed = True
        owned, self.owned = self.owned, {}
        for client in owned.values():
            await client.aclose()

    async def exchange(self, op: Operation, step: Send) -> Optional[httpx.Response]:
        """Sends ``step`` and reports the outcome to ``op``; then wakes the waiters."""
        try:
            route = self.check(op, step)
            if route is None:
                return None
            started = time.monotonic()
            proxy = None
            try:
                proxy = self.proxy_for(route, step.url)
                response = await self.send(self.client_for(route, proxy), route, step, started)
            except (httpx.HTTPError, _Refusal, TransportError) as exc:
                kind, message = _failure(exc)
                message = self.through_proxy(proxy, kind, message)
                _log.debug("request %s %s failed: %s", step.method, urlsplit(step.url).path, message)
                op.handle_failure(step.id, kind, message)
                return None
            _log_exchange(step, response.status_code, started)
            op.handle_response(step.id, response.status_code, response.headers.raw, response.content)
            return response
        finally:
            self.signal.notify()

    async def send(self, client: httpx.AsyncClient, route: str, step: Send, started: float) -> httpx.Response:
        deadline = self.deadline(started)
        if deadline is None:
            return await self.receive(client, route, step)
        try:
            return await asyncio.wait_for(self.receive(client, route, step), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise self.timed_out() from None

    async def receive(self, client: httpx.AsyncClient, route: str, step: Send) -> httpx.Response:
        body = step.body
        request = client.build_request(step.method, step.url, headers=step.headers, content=body or None)
        self.guard(client, route, request)
        response = await client.send(request, stream=True, follow_redirects=False, auth=None)
        cap = self.policy.max_body
        try:
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > cap:
                    raise _Refusal("body_too_large", self.policy.body_too_large())
        finally:
            await response.aclose()
        response._content = bytes(content)
        return response

    async def advance(self, op: Operation) -> Step:
        """As ``SyncDriver.advance``, awaiting instead of blocking."""
        signal = self.signal
        while True:
            seen = signal.gen
            step = self.poll(op)
            if isinstance(step, Send):
                if step.target:
                    return step
                await self.exchange(op, step)
            elif isinstance(step, Store):
                # At most the store's timeout (300 ms) against a Redis that does not answer: in a
                # worker thread, never on the event loop. If this task is cancelled meanwhile,
                # the command still finishes there and its reply is dropped (a lease it took
                # lapses by itself).
                self.stored(op, step, await asyncio.to_thread(step.run))
            elif isinstance(step, Done):
                return step
            elif isinstance(step, Wait):
                await signal.wait_async(seen, step.until)
            elif isinstance(step, Sign):
                await self.sign(op, step)
            else:
                delay = step.until - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def sign(self, op: Operation, step: Sign) -> None:
        """Performs ``step`` (only an App made with ``signer=`` asks): awaits a coroutine-function
        signer; runs a plain one in a worker thread (``asyncio.to_thread``), never on the event
        loop; once however many tasks need the JWT (the others ``Wait``). Reports its
        signature, or its exception as the signing failure; then wakes the waiters. If this
        task is cancelled meanwhile, the operation is abandoned and the next one asks again."""
        signer = self.app.signer
        if signer is None:
            self.signed(op, step, None, _NO_SIGNER)
            return
        try:
            if is_async_signer(signer):
                answer = signer(step.message)
            else:
                answer = await asyncio.to_thread(signer, step.message)
            if inspect.isawaitable(answer):  # a coroutine, or a plain function's awaitable
                answer = await answer
            signature = _signature(answer)
        except Exception as exc:  # noqa: BLE001 - any failure of the signer is the signing's failure
            self.signed(op, step, None, _signer_failed(exc))
            return
        self.signed(op, step, signature, None)

    async def drive(self, op: Operation) -> Tuple[Any, Optional[httpx.Response]]:
        """Drives ``op`` to the end: its value, and the response to its target request."""
        last: Optional[httpx.Response] = None
        try:
            while True:
                step = await self.advance(op)
                if isinstance(step, Done):
                    return step.value, last
                last = await self.exchange(op, step)
        finally:
            self.release(op)

    async def run(self, op: Operation) -> Any:
        """Drives ``op`` to the end and returns its value."""
        return (await self.drive(op))[0]

