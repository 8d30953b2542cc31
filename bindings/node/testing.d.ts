// Types of `icr-app/testing`.

/** Which requests a failure is injected into. */
export interface FaultOptions {
  /** How many requests (default 1). */
  times?: number
  /** Only requests whose path starts with this. */
  pathPrefix?: string
}

/** A request the fake registry received. */
export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string>
  /** The status answered (0: the connection was dropped). */
  status: number
}

/** The project's fake ICR registry on loopback, with the demo app and three installations. */
/** Settings applied when the registry starts. */
export interface FakeRegistryOptions {
  /** The registry's clock: the real time plus this many seconds (negative: behind). */
  clockOffset?: number
  /** How long new access tokens live, in seconds (default 7200). */
  tokenLifetime?: number
}

export declare class FakeRegistry {
  constructor(options?: FakeRegistryOptions)
  /** `new FakeRegistry(options)`, as a promise. */
  static start(options?: FakeRegistryOptions): Promise<FakeRegistry>
  /** `http://127.0.0.1:PORT`: the `baseUrl` to give `createAppAuth`. */
  readonly url: string
  readonly appId: string
  /** The demo app's private key (PKCS#8 PEM). */
  readonly privateKey: string
  /** The demo app's webhook secret. */
  readonly webhookSecret: string
  /** A webhook delivery as ICR sends it, signed with `secret`. */
  webhookDelivery(secret: string, event: string, installationId: string): { body: string; signature: string }
  readonly installationIds: string[]
  readonly organizationIds: string[]
  setClockOffset(seconds: number): void
  advanceClock(seconds: number): void
  setTokenLifetime(seconds: number): void
  injectStatus(status: number, options?: FaultOptions & { retryAfter?: number }): void
  injectDropConnection(options?: FaultOptions): void
  injectDelay(seconds: number, options?: FaultOptions): void
  injectMalformedBody(options?: FaultOptions): void
  injectRedirect(location: string, options?: FaultOptions & { status?: number }): void
  clearFaults(): void
  /** Every token minted so far: installations' and the app's. */
  readonly mintCount: number
  /** Tokens minted for `installationId`. */
  mintCountFor(installationId: string): number
  appTokenMintCount(): number
  lookupCount(organizationId: string): number
  addInstallation(organizationName: string, permissions?: Record<string, string>): string
  removeInstallation(installationId: string): void
  reinstall(organizationId: string): string
  requests(): RecordedRequest[]
  clearRequests(): void
  revokeAllTokens(): void
  expireToken(token: string): void
  tokenStatus(token: string): 'valid' | 'expired' | 'revoked' | 'unknown'
  close(): void
}

/** Settings of a `TlsFront`. */
export interface TlsFrontOptions {
  /** The name its certificate is for (default `registry.test`). */
  host?: string
}

/** TLS in front of a `FakeRegistry` (or of a `ConnectProxy`: a proxy spoken to over TLS) on
 * `127.0.0.1`, with a certificate from a CA made on the spot. */
export declare class TlsFront {
  constructor(backend: FakeRegistry | ConnectProxy, options?: TlsFrontOptions)
  /** The port it listens on, on `127.0.0.1`. */
  readonly port: number
  /** The CA's certificate (PEM): trust it (`caFile`) to reach the front. */
  readonly caPem: string
  close(): void
}

/** Settings of a `ConnectProxy`. */
export interface ConnectProxyOptions {
  /** Host names the proxy resolves, each to `127.0.0.1` on the given port. */
  resolve?: Record<string, number>
  /** Require `Proxy-Authorization: Basic` with these credentials (407 otherwise). */
  user?: string
  password?: string
  /** Refuse every request with 403. */
  forbid?: boolean
}

/** A forward proxy on `127.0.0.1` for tests: `CONNECT` tunnels and absolute-form `http://`
 * requests, each request line recorded. */
export declare class ConnectProxy {
  constructor(options?: ConnectProxyOptions)
  /** `http://127.0.0.1:PORT`. */
  readonly url: string
  /** `http://user:password@127.0.0.1:PORT`. */
  urlWithCredentials(user: string, password: string): string
  /** Every request line seen, e.g. `CONNECT registry.test:443 HTTP/1.1`. */
  requestLines(): string[]
  /** The first bytes (up to 64 KiB) the client sent into each tunnel. */
  tunneled(): Uint8Array[]
  clear(): void
  close(): void
}
