// Types of the npm package `icr-app` (CommonJS `index.js`, ESM `index.mjs`).

/** An RS256 signer for a key kept in a KMS or an HSM: the RSASSA-PKCS1-v1_5 SHA-256 signature
 * of `message`. */
export type Signer = (message: Uint8Array) => Promise<Uint8Array> | Uint8Array

/** The settings of `createAppAuth`. */
export interface AppAuthOptions {
  /** The app's id, as its dashboard shows it. */
  appId: string | number
  /** The private key's PEM (PKCS#1 or PKCS#8; `\n`-escaped as in an environment variable
   * too), as a string or a Buffer. Leave it out when `signer` signs. */
  privateKey?: string | Uint8Array
  /** The registry's base URL (default `https://api.carbonregistry.com`). */
  baseUrl?: string
  /** Signs the app JWT with a key kept elsewhere (a KMS or an HSM), instead of `privateKey`. */
  signer?: Signer
  /** The `fetch` that performs every request (default: the global `fetch`, or the package's
   * own transport when a proxy or extra CA certificates apply). A `fetch` given here is used
   * as it is: `proxy`, `caFile` and the proxy variables do not apply to it. */
  fetch?: (input: string, init: RequestInit) => Promise<Response>
  /** The proxy of every request to the registry (`http://host:port`,
   * `http://user:password@host:port`, or `https://` for a proxy spoken to over TLS), in place
   * of the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (`NO_PROXY` still applies;
   * loopback registries are never proxied). An `https` registry is reached through a `CONNECT`
   * tunnel; a plain `http` one is refused behind a proxy unless `allowInsecureHttp`. */
  proxy?: string | URL
  /** A PEM file of CA certificates trusted on top of Node's built-in roots, for the registry
   * and an `https://` proxy (`SSL_CERT_FILE` is honoured too). */
  caFile?: string
  /** Share tokens with every process on this Redis (`redis://`, `rediss://`, `unix://`): one
   * mint per installation for the whole fleet. */
  redisUrl?: string
  /** Seconds one Redis command may take before the app mints without the store for a while
   * (default 0.3). */
  redisTimeout?: number
  /** The shared store's sealing secret, needed with a `signer` (at least 32 random bytes, the
   * same in every process). */
  storeKey?: string | Uint8Array
  /** Seconds one exchange may take (default 30). */
  timeout?: number
  /** How many attempts a failed mint or app call gets (default 4). */
  retryAttempts?: number
  /** Seconds the retries of one call may wait in all (default 30). */
  retryMaxWait?: number
  /** The `User-Agent` sent. */
  userAgent?: string
  /** The `x-icr-api-version` sent (default `2023-06-16`). */
  apiVersion?: string
  /** Send credentials over plain `http://` to hosts other than loopback (loopback needs no
   * opt-in). */
  allowInsecureHttp?: boolean
}

/** `auth({ type: "app" })`: the app JWT. */
export interface AppAuthentication {
  type: 'app'
  /** The app JWT (RS256). */
  token: string
  appId: string
  /** ISO 8601. */
  expiresAt: string
}

/** Permission names and their levels, e.g. `{ organization_info: "VIEW" }`. */
export type Permissions = Record<string, string>

/** `auth({ type: "installation", ... })`: an installation access token. */
export interface InstallationAccessTokenAuthentication {
  type: 'token'
  tokenType: 'installation'
  token: string
  /** ISO 8601, as the registry gave it. */
  expiresAt: string
  permissions: Permissions
  installationId: string
  organizationId?: string
}

/** `auth({ type: "app-token" })`: an app access token. */
export interface AppAccessTokenAuthentication {
  type: 'token'
  tokenType: 'app'
  token: string
  expiresAt: string
  permissions: Permissions
  /** The registry's, or this app's id when the registry left it out. */
  appId: string
}

interface Cancellable {
  /** Aborting leaves the call at once (it rejects with the signal's reason) and releases a
   * mint it was making for the others. */
  signal?: AbortSignal
}

export interface AppAuthOptionsApp extends Cancellable {
  type: 'app'
}

export interface InstallationAuthOptionsById extends Cancellable {
  type: 'installation'
  installationId: string
  /** The token handed out has at least this many seconds left. */
  minLife?: number
}

export interface InstallationAuthOptionsByOrganization extends Cancellable {
  type: 'installation'
  /** The app's installation on this organization, whatever its id. */
  organizationId: string
  minLife?: number
}

export interface AppTokenAuthOptions extends Cancellable {
  type: 'app-token'
  minLife?: number
}

/** Who a request is sent as. */
export type FetchTarget = { installationId: string } | { organizationId: string } | { app: true }

/** An organization, as inside an installation. */
export interface Organization {
  id: string
  fullName?: string
  [field: string]: unknown
}

/** An installation of the app. */
export interface Installation {
  id: string
  appId?: string
  permissions?: Permissions
  organization?: Organization
  [field: string]: unknown
}

/** The app's counters, as the core counts them. */
export interface Stats {
  hits: number
  misses: number
  mints: number
  refreshes: number
  /** Failed mint attempts (a retried 503 counts too). */
  failures: number
  /** The same by kind (`server`, `rate_limited`, `unauthorized`, `transport`, ...): only kinds that happened. */
  failuresByKind: Record<string, number>
  waits: number
  sharedHits: number
  sharedFallbacks: number
  lookups: number
  sharedLookups: number
}

/** What `createAppAuth` returns. */
export interface AppAuth {
  (options: AppAuthOptionsApp): Promise<AppAuthentication>
  (options: InstallationAuthOptionsById | InstallationAuthOptionsByOrganization): Promise<InstallationAccessTokenAuthentication>
  (options: AppTokenAuthOptions): Promise<AppAccessTokenAuthentication>
  /** A request to the registry (`path` starting with `/`, or an absolute URL on the registry)
   * as `target`: a standard Response. The token goes to the registry only; no redirect is
   * followed; a 401 drops the token and the request is sent once more with a new one. */
  fetch(target: FetchTarget, path: string | URL, init?: RequestInit): Promise<Response>
  /** Every installation of the app, page after page. */
  installations(options?: { limit?: number }): AsyncGenerator<Installation, void, undefined>
  /** One installation; with `{ organizationId }`, the app's installation on it. */
  installation(installationId: string | { organizationId: string }): Promise<Installation>
  /** Acts on a verified webhook event: on `uninstalled`, `suspended` and
   * `newPermissionsAccepted`, drops the installation's token here and in the shared store, and
   * the organization's remembered installation. Resolves to whether it dropped anything. */
  handleEvent(event: WebhookEvent): Promise<boolean>
  /** Forgets an installation's token, or an organization's remembered installation and its
   * token, here and in the shared store. */
  forget(target: { installationId: string } | { organizationId: string }): Promise<void>
  /** Revokes every cached token and empties the cache: how many were revoked. A token the
   * registry already refuses (401: expired, revoked elsewhere, its installation removed) is
   * dropped without counting and is no failure; any other failure rejects, after every token
   * was tried. */
  revokeAll(): Promise<number>
  /** A snapshot of the counters. */
  stats(): Stats
}

/** Throws `InvalidKeyError` for a bad key and `ConfigError` for a bad setting, at once. */
export declare function createAppAuth(options: AppAuthOptions): AppAuth

/** Every failure of icr-app. */
export declare class IcrError extends Error {
  /** The core's stable name for the failure: `key`, `config`, `unauthorized`, `forbidden`,
   * `not_found`, `rate_limited`, `server`, `transport`, `signing`, ... */
  code: string
  /** The HTTP status, when the registry answered. */
  status?: number
  /** The registry's `Retry-After` in seconds, when it sent one. */
  retryAfter?: number
  /** For a `TransportError`: `connect`, `timeout`, `connection_lost`, `body_too_large`,
   * `refused`, `cancelled` or `other`. */
  kind?: string
  /** For a `NotFoundError` to an organization's lookup: the organization. */
  organizationId?: string
}
export declare class InvalidKeyError extends IcrError {}
export declare class ConfigError extends IcrError {}
export declare class AuthError extends IcrError {}
export declare class NotFoundError extends IcrError {}
export declare class RateLimitedError extends IcrError {}
export declare class ServerError extends IcrError {}
export declare class TransportError extends IcrError {}
export declare class SigningError extends IcrError {}
/** A webhook delivery failed verification (answer it with 403). */
export declare class WebhookError extends IcrError {}

/** A verified webhook event (what `verifyWebhook` returns). */
export declare class WebhookEvent {
  private constructor()
  /** `installed`, `uninstalled`, `suspended`, `unsuspended`, `newPermissionsAccepted`, ... */
  readonly event: string
  /** The installation it concerns, if any. */
  readonly installationId: string | null
  /** The whole decoded payload, as sent. */
  readonly payload: unknown
}

/** Verifies a delivery (`body` exactly as received, `signature` the `x-icr-signature-256`
 * header) with the app's webhook secret; throws a `WebhookError` saying which check failed. */
export declare function verifyWebhook(secret: string, body: string | Uint8Array, signature?: string | null): WebhookEvent
