"""ICR App SDK for the International Carbon Registry (carbonregistry.com).

An ICR app signs app JWTs with its private key, mints installation access tokens, calls the API
as an installation, and verifies webhooks. The protocol (JWTs, one mint per installation however
many ask, refresh ahead of expiry, clock-skew correction, retries with back-off and
``Retry-After``, every error message) is decided by the SDK's Rust core; this package performs
its effects with httpx::

    import icr_app

    app = icr_app.App(app_id, private_key_pem)
    with icr_app.Client(app) as client:
        token = client.installation_token(installation_id)
        # or as whatever installation the app has on an organization (found, and followed
        # when the organization reinstalls the app):
        token = client.installation_token(icr_app.ByOrganization(organization_id))

See ``README.md`` (the package's description) for the async client, httpx/requests auth,
webhooks, ``icr_app.testing.FakeRegistry``, and thread and fork safety.
"""

from __future__ import annotations

from . import _signal  # noqa: F401 - registers the fork handler
from ._auth import InstallationAuth, RequestsAuth
from ._client import AsyncClient, Client
from ._stats import StatsDict
from ._icr_app import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    SIGNATURE_HEADER,
    App,
    AuthError,
    ByOrganization,
    CallInstallation,
    CallInstallationsPage,
    ConfigError,
    Done,
    Error,
    GetJwt,
    GetToken,
    Installation,
    InstallationsPage,
    InvalidKeyError,
    ListInstallations,
    NotFoundError,
    Operation,
    Organization,
    RateLimitedError,
    Refresher,
    Revoke,
    RevokeAll,
    Forget,
    HandleEvent,
    Send,
    SendAs,
    ServerError,
    Sign,
    Sleep,
    Stats,
    Store,
    StoreReply,
    Token,
    TransportError,
    TransportPolicy,
    Wait,
    WebhookError,
    WebhookEvent,
    __version__,
    verify_webhook,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "SIGNATURE_HEADER",
    "App",
    "AsyncClient",
    "AuthError",
    "ByOrganization",
    "CallInstallation",
    "CallInstallationsPage",
    "Client",
    "ConfigError",
    "Done",
    "Error",
    "GetJwt",
    "GetToken",
    "Installation",
    "InstallationAuth",
    "InstallationsPage",
    "InvalidKeyError",
    "ListInstallations",
    "NotFoundError",
    "Operation",
    "Organization",
    "RateLimitedError",
    "Refresher",
    "RequestsAuth",
    "Revoke",
    "RevokeAll",
    "Forget",
    "HandleEvent",
    "Send",
    "SendAs",
    "ServerError",
    "Sign",
    "Sleep",
    "Stats",
    "StatsDict",
    "Store",
    "StoreReply",
    "Token",
    "TransportError",
    "TransportPolicy",
    "Wait",
    "WebhookError",
    "WebhookEvent",
    "__version__",
    "verify_webhook",
]
