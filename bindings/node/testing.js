'use strict'
// icr-app/testing: the project's fake ICR registry, on loopback, for your tests.

const native = require('./native.js')

const INSPECT = Symbol.for('nodejs.util.inspect.custom')

/**
 * A fake ICR registry on `http://127.0.0.1:PORT` with the demo app (`.appId`, `.privateKey`) and
 * three installations (`.installationIds`, on `.organizationIds`). It verifies app JWTs for real
 * (RS256, `iss`, `exp`, `iat`), mints `crs_` tokens, lists installations page by page, revokes,
 * and refuses unknown, revoked or expired tokens. Its clock can be skewed and failures injected.
 * Its server runs on threads of its own; `close()` stops it.
 */
class FakeRegistry {
  #native

  /** Starts the registry; `options.clockOffset` (seconds, negative: behind) and
   * `options.tokenLifetime` (seconds) set its clock and its tokens' lifetime at once. */
  constructor(options) {
    this.#native = new native.NativeFakeRegistry()
    const o = options || {}
    if (o.clockOffset !== undefined) this.setClockOffset(o.clockOffset)
    if (o.tokenLifetime !== undefined) this.setTokenLifetime(o.tokenLifetime)
  }

  /** `new FakeRegistry(options)`, as a promise (for `await FakeRegistry.start()`). */
  static async start(options) {
    return new FakeRegistry(options)
  }

  /** `http://127.0.0.1:PORT`: the `baseUrl` to give `createAppAuth`. */
  get url() {
    return this.#native.url
  }

  /** The demo app's id. */
  get appId() {
    return this.#native.appId
  }

  /** The demo app's private key (PKCS#8 PEM). */
  get privateKey() {
    return this.#native.privateKey
  }

  /** The demo app's webhook secret. */
  get webhookSecret() {
    return this.#native.webhookSecret
  }

  /** A webhook delivery as ICR sends it, signed with `secret`: `{ body, signature }` (the
   * `x-icr-signature-256` header's value), for `verifyWebhook`. */
  webhookDelivery(secret, event, installationId) {
    const [body, signature] = this.#native.webhookDelivery(secret, event, installationId)
    return { body, signature }
  }

  /** The demo installations' ids. */
  get installationIds() {
    return this.#native.installationIds
  }

  /** The organization of each demo installation, in the same order. */
  get organizationIds() {
    return this.#native.organizationIds
  }

  /** Sets the registry's clock to the real time plus `seconds` (negative: behind). */
  setClockOffset(seconds) {
    this.#native.setClockOffset(seconds)
  }

  /** Moves the registry's clock by `seconds`. */
  advanceClock(seconds) {
    this.#native.advanceClock(seconds)
  }

  /** How long new access tokens live, in seconds (default 7200). */
  setTokenLifetime(seconds) {
    this.#native.setTokenLifetime(seconds)
  }

  /** Answers the next `times` requests (under `pathPrefix`, if given) with `status` and an
   * error body, with `Retry-After: retryAfter` if given. */
  injectStatus(status, options) {
    this.#native.injectStatus(status, options)
  }

  /** Reads the next requests, then closes their connections without answering. */
  injectDropConnection(options) {
    this.#native.injectDropConnection(options)
  }

  /** Answers the next requests after `seconds`. */
  injectDelay(seconds, options) {
    this.#native.injectDelay(seconds, options)
  }

  /** Answers the next requests 200 with a body that is not JSON. */
  injectMalformedBody(options) {
    this.#native.injectMalformedBody(options)
  }

  /** Answers the next requests with a redirect (`status`, default 302) to `location`. */
  injectRedirect(location, options) {
    this.#native.injectRedirect(location, options)
  }

  /** Drops every queued failure. */
  clearFaults() {
    this.#native.clearFaults()
  }

  /** Every token minted so far: installations' and the app's. */
  get mintCount() {
    return this.#native.mintCount()
  }

  /** Tokens minted for `installationId`. */
  mintCountFor(installationId) {
    if (typeof installationId !== 'string') throw new TypeError('mintCountFor(installationId): give the installation\'s id (a string); the total is .mintCount')
    return this.#native.mintCount(installationId)
  }

  /** App access tokens minted. */
  appTokenMintCount() {
    return this.#native.appTokenMintCount()
  }

  /** Lookups of the app's installation on `organizationId`. */
  lookupCount(organizationId) {
    return this.#native.lookupCount(organizationId)
  }

  /** Installs the demo app on a new organization; `permissions` maps names to levels. Returns
   * the installation's id. */
  addInstallation(organizationName, permissions) {
    const flat = permissions ? Object.entries(permissions).flat() : undefined
    return this.#native.addInstallation(organizationName, flat)
  }

  /** Uninstalls: no longer listed, and minting for it answers 404. */
  removeInstallation(installationId) {
    this.#native.removeInstallation(installationId)
  }

  /** The organization reinstalls the app: its installation gets a new id, returned. */
  reinstall(organizationId) {
    return this.#native.reinstall(organizationId)
  }

  /** Every request received so far, oldest first: `{ method, path, headers, status }`
   * (`headers` an object of lower-case names). */
  requests() {
    return this.#native.requests().map((r) => {
      const headers = {}
      for (let i = 0; i + 1 < r.headers.length; i += 2) headers[r.headers[i]] = r.headers[i + 1]
      return { method: r.method, path: r.path, headers, status: r.status }
    })
  }

  /** Forgets the recorded requests. */
  clearRequests() {
    this.#native.clearRequests()
  }

  /** Revokes every token issued so far. */
  revokeAllTokens() {
    this.#native.revokeAllTokens()
  }

  /** Makes `token` expire now. */
  expireToken(token) {
    this.#native.expireToken(token)
  }

  /** What the registry thinks of `token` now: `valid`, `expired`, `revoked` or `unknown`. */
  tokenStatus(token) {
    return this.#native.tokenStatus(token)
  }

  /** Stops the registry (idempotent). */
  close() {
    this.#native.close()
  }

  [Symbol.dispose]() {
    this.close()
  }

  [INSPECT]() {
    return `FakeRegistry { url: ${JSON.stringify(this.url)}, appId: ${JSON.stringify(this.appId)} }`
  }
}

/** The loopback port of a `FakeRegistry` or a `ConnectProxy`. */
function backendPort(backend) {
  if (backend instanceof FakeRegistry || backend instanceof ConnectProxy) return Number(new URL(backend.url).port)
  throw new TypeError('TlsFront goes in front of a FakeRegistry or a ConnectProxy')
}

/**
 * TLS in front of a `FakeRegistry` (or of a `ConnectProxy`: a proxy spoken to over TLS) on
 * `127.0.0.1:port`, with a certificate for `host` (default `registry.test`) from a CA made on
 * the spot: trust `caPem` (write it to a file for `caFile`) to reach it. HTTP/1.1 only.
 */
class TlsFront {
  #native

  constructor(backend, options) {
    const host = (options && options.host) || 'registry.test'
    this.#native = new native.NativeTlsFront(backendPort(backend), host)
  }

  /** The port it listens on, on `127.0.0.1`. */
  get port() {
    return this.#native.port
  }

  /** The CA's certificate (PEM). */
  get caPem() {
    return this.#native.caPem
  }

  /** Stops it (idempotent). */
  close() {
    this.#native.close()
  }

  [Symbol.dispose]() {
    this.close()
  }
}

/**
 * A forward proxy on `127.0.0.1` for tests: it tunnels `CONNECT host:port` and forwards
 * absolute-form `http://` requests, records every request line and the first bytes of each
 * tunnel, resolves only the names given in `resolve` (`{ host: port }`, to `127.0.0.1`; others
 * as IP addresses or `localhost`), and can require Basic credentials (`user`, `password`: 407
 * without them) or refuse every tunnel (`forbid`: 403).
 */
class ConnectProxy {
  #native

  constructor(options) {
    const o = options || {}
    const resolve = o.resolve ? Object.entries(o.resolve).flat().map(String) : []
    this.#native = new native.NativeConnectProxy(resolve, o.user, o.password, o.forbid === true)
  }

  /** `http://127.0.0.1:PORT`. */
  get url() {
    return this.#native.url
  }

  /** `http://user:password@127.0.0.1:PORT`. */
  urlWithCredentials(user, password) {
    return this.#native.urlWithCredentials(user, password)
  }

  /** Every request line seen, e.g. `CONNECT registry.test:443 HTTP/1.1`. */
  requestLines() {
    return this.#native.requestLines()
  }

  /** The first bytes (up to 64 KiB) the client sent into each tunnel, one Buffer per tunnel. */
  tunneled() {
    return this.#native.tunneled()
  }

  /** Forgets what it saw. */
  clear() {
    this.#native.clear()
  }

  /** Stops it (idempotent). */
  close() {
    this.#native.close()
  }

  [Symbol.dispose]() {
    this.close()
  }
}

module.exports = { FakeRegistry, TlsFront, ConnectProxy }
