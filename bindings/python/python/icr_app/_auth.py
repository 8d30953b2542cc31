"""``InstallationAuth`` (httpx, sync and async) and ``RequestsAuth`` (requests): any request of
your own HTTP client, authorised as an installation.

Both drive the core's ``SendAs`` operation: the core checks the request is for the registry (a
token never reaches another host), hands out the cached token or mints one (once, however many
ask), learns the registry's clock from the response, and on a 401 drops the token, mints again
and has the request sent once more. Your client sends the request itself; mints go through the
icr_app client given.

Only the registry's answer to the request the token was added to is reported to the core: a
redirect your client follows ends the operation (the other host's ``Date`` teaches no clock, its
401 drops no token), and the auth never acts twice for one request. A token is never added to a
plain ``http://`` request that may go through a proxy (see ``_proxies``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, AsyncGenerator, Generator, Optional, Union

import httpx

from . import _proxies
from ._client import AsyncClient, Client, InstallationRef, _check_scope
from ._icr_app import Send, SendAs

if TYPE_CHECKING:  # pragma: no cover
    import requests

_log = logging.getLogger("icr_app")


class InstallationAuth(httpx.Auth):
    """httpx authentication as an installation (its id, or ``ByOrganization(organization_id)``
    for the app's installation on that organization, followed when it is reinstalled; ``None``:
    as the app), for
    ``httpx.Client(auth=...)`` with an ``icr_app.Client``, or ``httpx.AsyncClient(auth=...)``
    with an ``icr_app.AsyncClient``. Requests must be for the registry the App is configured
    with. With ``follow_redirects=True``, only the registry's own answer counts: a response
    from another host is returned to you as it is, and never drops the token or moves the
    registry's clock. A plain ``http://`` request that may go through a proxy (the
    environment's, or one set on your client) gets no token: ``TransportError`` (kind
    ``refused``) says how to fix it."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, client: Union[Client, AsyncClient], installation_id: Optional[InstallationRef]) -> None:
        if not isinstance(client, (Client, AsyncClient)):
            raise TypeError("client must be an icr_app.Client or icr_app.AsyncClient")
        _check_scope(installation_id, "InstallationAuth")
        self._client = client
        self._installation_id = installation_id
        self._api_version = client.app.api_version

    def __repr__(self) -> str:
        return f"icr_app.InstallationAuth(installation_id={self._installation_id!r})"

    def _start(self, request: httpx.Request) -> SendAs:
        _proxies.check_environment(str(request.url))
        return SendAs(self._client.app, self._installation_id, request.method, str(request.url))

    def _authorize(self, request: httpx.Request, step: Send) -> None:
        self._client._driver.policy.check(step)
        authorization = step.authorization
        if authorization is not None:
            request.headers["Authorization"] = authorization
        if "x-icr-api-version" not in request.headers:
            request.headers["x-icr-api-version"] = self._api_version

    def _answers(self, response: httpx.Response, step: Send) -> bool:
        """Whether ``response`` is the registry's answer to the request ``step`` authorised (and
        not another host's, reached by a redirect the client followed)."""
        request = response.request
        return request.headers.get("authorization") == step.authorization and self._client.app._is_registry(
            str(request.url)
        )

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow httpx runs for ``httpx.Client``: needs an ``icr_app.Client``."""
        client = self._client
        if not isinstance(client, Client):
            raise TypeError("InstallationAuth with an httpx.Client needs an icr_app.Client (not an AsyncClient)")
        driver = client._driver
        op = self._start(request)
        try:
            step = driver.advance(op)
            while isinstance(step, Send):
                self._authorize(request, step)
                _proxies.direct_only(request)
                response = yield request
                if not self._answers(response, step):
                    return
                driver.report(op, step, response.status_code, response.headers.raw)
                step = driver.advance(op)
        finally:
            driver.release(op)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow httpx runs for ``httpx.AsyncClient``: needs an ``icr_app.AsyncClient``."""
        client = self._client
        if not isinstance(client, AsyncClient):
            raise TypeError("InstallationAuth with an httpx.AsyncClient needs an icr_app.AsyncClient")
        driver = client._driver
        op = self._start(request)
        try:
            step = await driver.advance(op)
            while isinstance(step, Send):
                self._authorize(request, step)
                _proxies.direct_only_async(request)
                response = yield request
                if not self._answers(response, step):
                    return
                driver.report(op, step, response.status_code, response.headers.raw)
                step = await driver.advance(op)
        finally:
            driver.release(op)


def _requests_auth_base() -> Any:
    try:
        import requests.auth
    except ImportError:  # pragma: no cover - requests is optional
        return object
    return requests.auth.AuthBase


class RequestsAuth(_requests_auth_base()):  # type: ignore[misc]
    """``requests`` authentication as an installation (its id, or
    ``ByOrganization(organization_id)``; ``None``: as the app), with an
    ``icr_app.Client``: ``requests.get(url, auth=RequestsAuth(client, installation_id))``. A 401
    drops the token, mints a new one and sends the request once more. Only the answer to the
    request the token was added to counts: redirects requests follows are left alone (requests
    drops ``Authorization`` on a redirect to another host). A plain ``http://`` request gets no
    token while the environment names a proxy for it (``HTTP_PROXY``/``ALL_PROXY`` without the
    host in ``NO_PROXY``); a proxy given in code (``proxies=``, ``Session.proxies``) cannot be
    seen before the request is sent: give none for a plain ``http://`` registry. Needs
    ``pip install icr-app[requests]``."""

    def __init__(self, client: Client, installation_id: Optional[InstallationRef]) -> None:
        if not isinstance(client, Client):
            raise TypeError("RequestsAuth needs an icr_app.Client")
        _check_scope(installation_id, "RequestsAuth")
        self._client = client
        self._installation_id = installation_id
        self._api_version = client.app.api_version

    def __repr__(self) -> str:
        return f"icr_app.RequestsAuth(installation_id={self._installation_id!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        driver = self._client._driver
        url = request.url or ""
        _proxies.check_environment(url)
        op = SendAs(self._client.app, self._installation_id, request.method or "GET", url)
        try:
            step = driver.advance(op)
            if not isinstance(step, Send):  # pragma: no cover - a SendAs sends its request first
                driver.release(op)
                return request
            self._authorize(request, step)
        except BaseException:
            driver.release(op)
            raise
        request.register_hook("response", _Hook(self, op, step, request))  # type: ignore[no-untyped-call]
        return request

    def _authorize(self, request: requests.PreparedRequest, step: Send) -> None:
        self._client._driver.policy.check(step)
        authorization = step.authorization
        if authorization is not None:
            request.headers["Authorization"] = authorization
        request.headers.setdefault("x-icr-api-version", self._api_version)


def _proxied(url: str, proxies: Any) -> bool:
    """Whether requests sent plain-http ``url`` through one of ``proxies`` (a hook's kwargs)."""
    if not url.lower().startswith("http://") or not proxies:
        return False
    import requests.utils

    return requests.utils.select_proxy(url, proxies) is not None


class _Hook:
    """The response hook of one authorised request: reports the response to it, once; sends
    once more after a 401. requests copies a request's hooks onto the requests of the redirects
    it follows: their responses are not this request's, and are left untouched."""

    def __init__(self, auth: RequestsAuth, op: SendAs, step: Send, request: requests.PreparedRequest) -> None:
        self.auth, self.op, self.step, self.request = auth, op, step, request
        self.acted = False

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if self.acted or response.request is not self.request:
            return response
        self.acted = True
        driver = self.auth._client._driver
        op = self.op
        try:
            driver.report(op, self.step, response.status_code, list(response.headers.items()))
            step = driver.advance(op)
            if not isinstance(step, Send):
                return response
            if _proxied(response.request.url or "", kwargs.get("proxies")):
                # A proxy given in code: the refused token went through it in clear; a second one
                # does not.
                _log.warning(
                    "a token was sent through a proxy in clear on a plain http:// request (a proxy given to requests "
                    "in code); not sending another: give no proxy for the registry, or use https://"
                )
                return response
            # The token was refused and a new one minted: send once more with it.
            response.content  # noqa: B018 - read the refused response, freeing its connection
            response.close()
            again = response.request.copy()
            self.auth._authorize(again, step)
            again.hooks = {"response": []}
            sent: requests.Response = response.connection.send(again, **kwargs)
            sent.history.append(response)
            sent.request = again
            return _Hook(self.auth, op, step, again)(sent, **kwargs)
        finally:
            driver.release(op)
