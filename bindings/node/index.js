'use strict'
// icr-app: ICR App authentication for Node.js. The Rust core (the addon, ./native.js) decides
// everything (single flight, refresh ahead, the learned clock, retries and back-off, 401 then
// mint again once, pagination); this file only performs its effects: `fetch` for a request,
// timers for a sleep or a wait, the user's signer for a signature. Every call into the addon is
// synchronous and short; nothing here blocks the event loop.

const { inspect } = require('node:util')
const native = require('./native.js')
const { NodeTransport } = require('./transport.js')

const INSPECT = Symbol.for('nodejs.util.inspect.custom')

/** How many scopes' result objects an app keeps for its cached tokens. */
const MEMO_LIMIT = 4096

// ---------------------------------------------------------------------------------------------
// Errors

/** Every failure of icr-app. `.code` is the core's stable name for it; `.status` the HTTP
 * status when the registry answered. No message ever holds a key, JWT, token or password. */
class IcrError extends Error {
  constructor(message, info) {
    super(message)
    const i = info || {}
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, configurable: true, writable: true })
    this.code = i.code || 'other'
    if (i.status != null) this.status = i.status
    if (i.retryAfter != null) this.retryAfter = i.retryAfter
    if (i.kind != null) this.kind = i.kind
    if (i.organizationId != null) this.organizationId = i.organizationId
  }
}
/** The private key cannot be used (not a key, encrypted, not RSA, a public key, truncated...). */
class InvalidKeyError extends IcrError {}
/** A setting or argument is invalid. */
class ConfigError extends IcrError {}
/** The registry refused the credential: 401 or 403. */
class AuthError extends IcrError {}
/** 404: the installation or resource does not exist or is not visible to this app. */
class NotFoundError extends IcrError {}
/** 429 after the retries the core allows; `.retryAfter` in seconds when the registry sent it. */
class RateLimitedError extends IcrError {}
/** A 5xx answer after the retries the core allows. */
class ServerError extends IcrError {}
/** No answer came (refused, connection failed or dropped, timeout, body over the cap), or the
 * request was refused before sending; `.kind` says which. */
class TransportError extends IcrError {}
/** The signer failed or returned no signature. */
class SigningError extends IcrError {}
/** A webhook delivery failed verification (answer it with 403); the message says which check. */
class WebhookError extends IcrError {}

const CLASSES = {
  key: InvalidKeyError,
  config: ConfigError,
  unauthorized: AuthError,
  forbidden: AuthError,
  not_found: NotFoundError,
  rate_limited: RateLimitedError,
  server: ServerError,
  transport: TransportError,
  signing: SigningError,
  webhook: WebhookError,
}

function fromInfo(info) {
  const Class = CLASSES[info.code] || IcrError
  return new Class(info.message, info)
}

/** The IcrError for an error the addon threw (`[icr:CODE] message`), or the error itself. */
function fromThrown(error) {
  const m = error && typeof error.message === 'string' && /^\[icr:([a-z_]+)\] ([\s\S]*)$/.exec(error.message)
  if (!m) return error
  return fromInfo({ code: m[1], message: m[2] })
}

function configError(setting, problem) {
  return new ConfigError(`invalid ${setting}: ${problem}`, { code: 'config' })
}

// ---------------------------------------------------------------------------------------------
// Waking the operations that wait for another one

/** Operations that `wait` for another operation on the same app to report back: every report
 * and every abandon notifies; a waiter polls again once the generation moved, or at its time. */
class Signal {
  constructor() {
    this.gen = 0
    this.waiters = new Set()
  }

  notify() {
    this.gen++
    if (this.waiters.size === 0) return
    const waiters = this.waiters
    this.waiters = new Set()
    for (const wake of waiters) wake()
  }

  wait(seen, until, abortSignal) {
    if (this.gen !== seen) return Promise.resolve()
    return new Promise((resolve, reject) => {
      let timer
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(done)
        if (abortSignal) abortSignal.removeEventListener('abort', aborted)
        resolve()
      }
      const aborted = () => {
        clearTimeout(timer)
        this.waiters.delete(done)
        reject(abortSignal.reason)
      }
      this.waiters.add(done)
      timer = setTimeout(done, Math.max(0, until - Date.now()))
      if (abortSignal) abortSignal.addEventListener('abort', aborted, { once: true })
    })
  }
}

function sleepUntil(until, abortSignal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (abortSignal) abortSignal.removeEventListener('abort', aborted)
      resolve()
    }, Math.max(0, until - Date.now()))
    const aborted = () => {
      clearTimeout(timer)
      reject(abortSignal.reason)
    }
    if (abortSignal) abortSignal.addEventListener('abort', aborted, { once: true })
  })
}

// ---------------------------------------------------------------------------------------------
// Performing the core's steps

class BodyTooLarge extends Error {}

function flatten(headers) {
  const flat = []
  for (const [name, value] of headers) flat.push(name, value)
  return flat
}

/** The body of `response`, at most `cap` bytes (`BodyTooLarge` beyond). */
async function readCapped(response, cap) {
  if (!response.body) return undefined
  const length = response.headers.get('content-length')
  if (length !== null && /^[0-9]+$/.test(length)) {
    // The length is known (and held to by fetch): read it whole, or refuse it unread.
    if (Number(length) > cap) {
      await response.body.cancel().catch(() => {})
      throw new BodyTooLarge()
    }
    return Buffer.from(await response.arrayBuffer())
  }
  const reader = response.body.getReader()
  const chunks = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > cap) {
      await reader.cancel().catch(() => {})
      throw new BodyTooLarge()
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks, total)
}

/** After a timeout: the answer to `sent`, if it ever comes, closed unread (its connection
 * freed). A body already being read is left to finish or fail on its own. */
function closeLate(sent) {
  if (!sent || typeof sent.then !== 'function') return
  sent.then((late) => {
    if (late && late.body && !late.body.locked) late.body.cancel().catch(() => {})
  }, () => {})
}

const CONNECT = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT',
  // The registry's certificate is not trusted (or not for its name): no connection was made.
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID',
])

/** The core's transport failure kind for a `fetch` error, and a description (no header, so
 * no credential, is ever in one). */
function failure(error, timedOut, policy) {
  if (error instanceof BodyTooLarge) return ['body_too_large', policy.bodyTooLarge]
  if (timedOut) return ['timeout', `no complete answer within ${policy.timeoutMs / 1000} s, the timeout for one exchange (createAppAuth({ timeout }))`]
  // The package's own transport already knows (a proxy's refusal, named without credentials).
  if (error && error.icrKind) return [error.icrKind, error.message]
  const cause = error && error.cause
  const code = (cause && cause.code) || (error && error.code)
  const text = `${(error && error.name) || 'Error'}: ${(error && error.message) || String(error)}${cause && cause.message ? ` (${cause.message})` : ''}`
  if (code && CONNECT.has(code)) return ['connect', text]
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return ['connection_lost', text]
  return ['other', text]
}

/** What one app's operations share: the core app, the signal, the policy, fetch, the signer. */
class Driver {
  constructor(app, options) {
    this.app = app
    this.signal = new Signal()
    this.policy = app.policy()
    // A user's fetch is used as it is. Otherwise the global fetch, unless the registry is
    // reached through a proxy or with extra CA certificates, which Node's fetch does not
    // honour: then the package's own transport (node:http, node:https, node:tls).
    const network = options.fetch ? null : app.network()
    this.transport = network ? new NodeTransport(network, (kind, message) => app.throughProxy(kind, message), this.policy.timeoutMs) : null
    this.fetch = options.fetch || (this.transport ? this.transport.fetch : (input, init) => globalThis.fetch(input, init))
    this.signer = options.signer
  }

  /** Drives `op` to the end: its value, and the response to its `request` step (if any). */
  async drive(op, abortSignal) {
    let last = null
    // Whether the core has finished the operation (a `done` or `error` step): tracked here
    // rather than asked of the addon on the way out.
    let finished = false
    try {
      for (;;) {
        if (abortSignal && abortSignal.aborted) throw abortSignal.reason
        const seen = this.signal.gen
        // One JSON text per step (see the addon's `Step`): one value across the boundary.
        const step = JSON.parse(op.poll())
        switch (step.kind) {
          case 'send':
            last = await this.exchange(op, step, abortSignal, last)
            break
          case 'wait':
            await this.signal.wait(seen, step.until, abortSignal)
            break
          case 'sleep':
            await sleepUntil(step.until, abortSignal)
            break
          case 'sign':
            await this.sign(op, step)
            break
          case 'store':
            await this.store(op, step)
            break
          case 'done':
            finished = true
            // A finished operation may have released what others wait for.
            this.signal.notify()
            return { value: step.value, response: last }
          case 'error':
            finished = true
            this.signal.notify()
            if (last && last.body) last.body.cancel().catch(() => {})
            throw fromInfo(step.error)
          default:
            throw new IcrError(`icr-app: unknown step ${step.kind}`)
        }
      }
    } finally {
      if (!finished) {
        op.abandon()
        this.signal.notify()
      }
    }
  }

  async run(op, abortSignal) {
    return (await this.drive(op, abortSignal)).value
  }

  /** Sends `step` and reports the outcome; then wakes the waiters. A `request` step's response
   * is reported without its body and handed back unread (its body is the caller's). */
  async exchange(op, step, abortSignal, previous) {
    try {
      // The transport policy's refusal (credentials in clear, a bad scheme), decided by the
      // addon with the step.
      if (step.refused !== undefined) {
        op.handleFailure(step.id, 'refused', step.refused)
        return previous
      }
      // The whole exchange within the policy's timeout; for the caller's own request, until
      // its headers are in (its body is the caller's to read, bounded by its own signal). The
      // deadline races the exchange rather than aborting it through a signal: Node's fetch
      // costs some 50 µs a request for a signal (BENCHMARKS.md, issue 25). An answer that
      // comes after the deadline is closed unread when it comes; one that never comes is
      // ended by fetch's own limits (undici's: 300 s), or by the package's transport a
      // second after the deadline. The caller's own signal is passed on and aborts at once.
      const target = step.purpose === 'request'
      let timedOut = false
      let timer
      const deadline = new Promise((resolve, reject) => {
        timer = setTimeout(() => {
          timedOut = true
          reject(new Error('timeout'))
        }, this.policy.timeoutMs)
      })
      let sent
      let response
      let body
      try {
        sent = this.fetch(step.url, {
          method: step.method,
          headers: step.headers,
          body: step.binary ? op.bytes() : step.body,
          // Never follow a redirect with a credential: the 3xx is the answer.
          redirect: 'manual',
          signal: abortSignal,
        })
        response = await Promise.race([sent, deadline])
        if (!target) body = await Promise.race([readCapped(response, this.policy.maxBody), deadline])
      } catch (error) {
        if (timedOut) closeLate(sent)
        if (abortSignal && abortSignal.aborted) throw abortSignal.reason
        const [kind, message] = failure(error, timedOut, this.policy)
        op.handleFailure(step.id, kind, message)
        return previous
      } finally {
        clearTimeout(timer)
      }
      if (previous && previous !== response && previous.body) previous.body.cancel().catch(() => {})
      op.handleResponse(step.id, response.status, flatten(response.headers), body)
      return target ? response : previous
    } finally {
      this.signal.notify()
    }
  }

  /** Performs a `store` step: the command runs on Redis on libuv's thread pool (within the
   * store's timeout), never on the event loop; its reply, a failure included, is reported. */
  async store(op, step) {
    const reply = await op.runStore()
    try {
      op.handleStore(step.id, reply)
    } finally {
      this.signal.notify()
    }
  }

  /** Performs a `sign` step with the user's signer (awaited); its failure is the call's. */
  async sign(op, step) {
    let signature = null
    let error = null
    try {
      if (typeof this.signer !== 'function') throw new Error('this app has no signer: give createAppAuth its privateKey or a signer')
      const message = op.bytes()
      const answer = await this.signer(new Uint8Array(message.buffer, message.byteOffset, message.byteLength))
      if (answer instanceof Uint8Array) signature = Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength)
      else if (answer instanceof ArrayBuffer) signature = Buffer.from(answer)
      else throw new TypeError(`the signer returned ${answer === null ? 'null' : typeof answer}, not the signature as a Uint8Array`)
      if (signature.length === 0) throw new TypeError('the signer returned an empty signature')
    } catch (e) {
      signature = null
      error = `the signer failed: ${(e && e.name) || 'Error'}: ${(e && e.message) || String(e)}`
    }
    try {
      op.handleSignature(step.id, signature, error)
    } finally {
      this.signal.notify()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Results

/** `util.inspect` of a result: its token redacted (one function for every result). */
function inspectResult(depth, options) {
  const name = this.type === 'app' ? 'AppAuthentication' : this.tokenType === 'app' ? 'AppAccessTokenAuthentication' : 'InstallationAccessTokenAuthentication'
  return `${name} ${inspect({ ...this, token: '[redacted]' }, options)}`
}

function hideToken(result) {
  Object.defineProperty(result, INSPECT, { enumerable: false, value: inspectResult })
  return Object.freeze(result)
}

function tokenResult(kind, value) {
  if (kind === 'app') {
    return hideToken({
      type: 'token',
      tokenType: 'app',
      token: value.token,
      expiresAt: value.expiresAt,
      permissions: value.permissions || {},
      appId: value.appId,
    })
  }
  return hideToken({
    type: 'token',
    tokenType: 'installation',
    token: value.token,
    expiresAt: value.expiresAt,
    permissions: value.permissions || {},
    installationId: value.installationId,
    organizationId: value.organizationId,
  })
}

// ---------------------------------------------------------------------------------------------
// Options

function text(setting, value) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw configError(setting, `it must be a string, not ${typeof value}`)
  return value
}

function seconds(setting, value) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw configError(setting, 'it must be a number of seconds, 0 or more')
  return value
}

function nativeOptions(options) {
  if (!options || typeof options !== 'object') throw configError('options', 'createAppAuth takes an object: { appId, privateKey, baseUrl, ... }')
  let appId = options.appId
  if (typeof appId === 'number' && Number.isFinite(appId)) appId = String(appId)
  if (typeof appId !== 'string' || appId.trim() === '') throw configError('appId', "give the app's id (shown on the app's dashboard) as a string")
  let privateKey = options.privateKey
  if (privateKey !== undefined && privateKey !== null) {
    if (privateKey instanceof Uint8Array) privateKey = Buffer.from(privateKey.buffer, privateKey.byteOffset, privateKey.byteLength)
    else if (typeof privateKey !== 'string') throw configError('privateKey', `it must be the PEM as a string or a Buffer, not ${typeof privateKey}`)
  } else {
    privateKey = undefined
  }
  if (options.signer !== undefined && options.signer !== null && typeof options.signer !== 'function') {
    throw configError('signer', 'it must be an async function taking the bytes to sign (Uint8Array) and returning their RS256 signature (Uint8Array)')
  }
  if (options.fetch !== undefined && options.fetch !== null && typeof options.fetch !== 'function') {
    throw configError('fetch', 'it must be a fetch function (the global fetch, undici fetch, a mock)')
  }
  let storeKey = options.storeKey
  if (storeKey !== undefined && storeKey !== null) {
    if (typeof storeKey === 'string') storeKey = Buffer.from(storeKey, 'utf8')
    else if (storeKey instanceof Uint8Array) storeKey = Buffer.from(storeKey.buffer, storeKey.byteOffset, storeKey.byteLength)
    else throw configError('storeKey', 'it must be a Buffer (at least 32 random bytes, the same in every process sharing the store)')
  } else {
    storeKey = undefined
  }
  const retryAttempts = options.retryAttempts
  if (retryAttempts !== undefined && (!Number.isInteger(retryAttempts) || retryAttempts < 1)) {
    throw configError('retryAttempts', 'it must be a whole number, 1 or more')
  }
  return {
    appId,
    privateKey,
    signer: typeof options.signer === 'function',
    storeKey,
    baseUrl: text('baseUrl', options.baseUrl),
    apiVersion: text('apiVersion', options.apiVersion),
    userAgent: text('userAgent', options.userAgent),
    allowInsecureHttp: options.allowInsecureHttp === true,
    timeout: seconds('timeout', options.timeout),
    retryAttempts,
    retryMaxWait: seconds('retryMaxWait', options.retryMaxWait),
    redisUrl: text('redisUrl', options.redisUrl),
    redisTimeout: seconds('redisTimeout', options.redisTimeout),
    proxy: proxyText(options.proxy),
    caFile: text('caFile', options.caFile),
    ownTransport: options.fetch === undefined || options.fetch === null,
    environment: networkEnvironment(),
  }
}

/** The proxy setting as a string (a `URL` too). */
function proxyText(value) {
  if (value instanceof URL) return value.href
  return text('proxy', value)
}

/** The environment variables the network settings read (this thread's `process.env`): the
 * proxies' (the addon applies the core's rule to them) and `SSL_CERT_FILE`. */
const NETWORK_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY', 'SSL_CERT_FILE']
function networkEnvironment() {
  const found = {}
  for (const name of NETWORK_VARIABLES) {
    const value = process.env[name]
    if (value !== undefined) found[name] = value
  }
  return found
}

/** The scope `{ installationId } | { organizationId } | { app: true }` names. */
function scopeOf(target, what) {
  if (target && typeof target === 'object') {
    if (target.installationId !== undefined && target.installationId !== null) return ['installation', String(target.installationId)]
    if (target.organizationId !== undefined && target.organizationId !== null) return ['organization', String(target.organizationId)]
    if (target.app === true) return ['app', undefined]
  }
  throw configError(what, 'name an installation ({ installationId }), an organization ({ organizationId }) or the app ({ app: true })')
}

function abortSignalOf(options) {
  const signal = options && options.signal
  if (signal === undefined || signal === null) return undefined
  if (!(signal instanceof AbortSignal)) throw configError('signal', 'it must be an AbortSignal')
  return signal
}

// ---------------------------------------------------------------------------------------------
// createAppAuth

/**
 * The authentication function of one ICR app, with `fetch`, `installations`, `installation`,
 * `revokeAll` and `stats` on it. Throws `InvalidKeyError` for a bad key, `ConfigError` for a bad
 * setting, at once.
 */
function createAppAuth(options) {
  const settings = nativeOptions(options)
  let app
  try {
    app = new native.NativeApp(settings)
  } catch (error) {
    throw fromThrown(error)
  }
  const appId = settings.appId
  const driver = new Driver(app, options)
  const signal = driver.signal
  // The result object last made for each scope's cached token, with the addon's serial number
  // for it, the time until which it may be handed out again, and the signal's generation then.
  const memos = { installation: new Map(), organization: new Map(), app: new Map() }

  function start(make) {
    try {
      return make()
    } catch (error) {
      throw fromThrown(error)
    }
  }

  // Hits served from `memo` without calling into the core (added to `stats().hits`).
  let memoHits = 0

  /** The cached token for the scope, or `undefined`. The core decides: a token it handed out
   * is handed out again by this file only until the time the core gave with it (its refresh
   * time or minimum life) and while no operation on the app has reported back since (a 401,
   * a revoke, a refresh all report); otherwise the core is asked. */
  function cachedToken(kind, id) {
    const memo = memos[kind]
    const known = memo.get(id)
    if (known !== undefined && known.gen === signal.gen && Date.now() < known.serveUntil) {
      memoHits++
      return known.result
    }
    let serial
    try {
      serial = app.hit(kind, id)
    } catch (error) {
      throw fromThrown(error)
    }
    if (serial === 0) return undefined
    if (known !== undefined && known.serial === serial) {
      known.gen = signal.gen
      return known.result
    }
    const fresh = app.freshToken()
    if (!fresh) return undefined
    const result = tokenResult(kind, fresh)
    // Bounded: the core's cache is (an LRU); this only spares it calls for the busiest scopes.
    if (memo.size >= MEMO_LIMIT) memo.clear()
    memo.set(id, { serial, result, promise: Promise.resolve(result), serveUntil: fresh.serveUntil, gen: signal.gen })
    return result
  }

  async function mint(kind, id, minLife, abortSignal) {
    const { value } = await driver.drive(start(() => app.token(kind, id, minLife)), abortSignal)
    return tokenResult(kind, value)
  }

  function token(kind, id, minLife, abortSignal) {
    if (minLife === undefined) {
      const cached = cachedToken(kind, id)
      if (cached !== undefined) return Promise.resolve(cached)
    }
    return mint(kind, id, minLife, abortSignal)
  }

  async function appJwt(abortSignal) {
    const value = await driver.run(app.jwt(), abortSignal)
    return hideToken({ type: 'app', token: value.token, appId, expiresAt: value.expiresAt })
  }

  // Not an async function: a cached token is handed back in a resolved promise, without a
  // frame of its own.
  function auth(authOptions) {
    // The hot path: an installation's token handed out again (see `cachedToken`).
    if (authOptions !== null && typeof authOptions === 'object' && authOptions.type === 'installation' && authOptions.minLife === undefined) {
      const known = memos.installation.get(authOptions.installationId)
      if (known !== undefined && known.gen === signal.gen && Date.now() < known.serveUntil && authOptions.signal === undefined) {
        memoHits++
        // The same settled promise every time: no allocation on the hot path.
        return known.promise
      }
    }
    try {
      return dispatch(authOptions)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  function dispatch(authOptions) {
    if (!authOptions || typeof authOptions !== 'object') throw configError('auth options', 'call auth({ type: "app" | "installation" | "app-token", ... })')
    const abortSignal = authOptions.signal === undefined ? undefined : abortSignalOf(authOptions)
    switch (authOptions.type) {
      case 'app':
        return appJwt(abortSignal)
      case 'installation': {
        const installationId = authOptions.installationId
        if (typeof installationId === 'string' && authOptions.minLife === undefined) {
          return token('installation', installationId, undefined, abortSignal)
        }
        const [kind, id] = scopeOf(authOptions, 'installationId')
        if (kind === 'app') throw configError('installationId', 'give installationId or organizationId')
        return token(kind, id, seconds('minLife', authOptions.minLife), abortSignal)
      }
      case 'app-token':
        return token('app', undefined, seconds('minLife', authOptions.minLife), abortSignal)
      default:
        throw configError('type', `${JSON.stringify(String(authOptions.type))} is not one of "app", "installation", "app-token"`)
    }
  }

  /** A request to the registry as an installation, an organization or the app: a standard
   * Response. The token goes to the registry's host only; a 401 drops it, and the request is
   * sent once more with a new one. No redirect is followed (a 3xx is the answer). */
  auth.fetch = async function icrFetch(target, path, init) {
    const [kind, id] = scopeOf(target, 'fetch target')
    const url = path instanceof URL ? path.href : path
    if (typeof url !== 'string') throw configError('path', 'give a path starting with / (or an absolute URL on the registry)')
    const request = init || {}
    const method = (request.method || 'GET').toUpperCase()
    const headers = new Headers(request.headers)
    let body
    if (request.body !== undefined && request.body !== null) {
      const wrapped = new Response(request.body)
      body = Buffer.from(await wrapped.arrayBuffer())
      const type = wrapped.headers.get('content-type')
      if (type && !headers.has('content-type')) headers.set('content-type', type)
    }
    const op = start(() => app.sendAs(kind, id, method, url, flatten(headers), body))
    const { response } = await driver.drive(op, abortSignalOf(request))
    return response
  }

  /** Every installation of the app, page after page (`limit` a page). */
  auth.installations = async function* installations(listOptions) {
    const limit = (listOptions && listOptions.limit) || 100
    let page = 0
    let seen = 0
    for (;;) {
      const value = await driver.run(app.installationsPage(limit, page, seen))
      const list = value.installations || []
      for (const installation of list) yield installation
      seen += list.length
      if (!value.hasMore) return
      page++
    }
  }

  /** One installation (`GET /app/installations/{id}`), or with `{ organizationId }` the
   * app's installation on that organization. */
  auth.installation = async function installation(installationId) {
    if (installationId && typeof installationId === 'object' && installationId.organizationId) {
      return driver.run(start(() => app.installationForOrganization(String(installationId.organizationId))))
    }
    if (typeof installationId !== 'string' && typeof installationId !== 'number') throw configError('installationId', 'give the installation id as a string')
    return driver.run(start(() => app.installation(String(installationId))))
  }

  /** Acts on a verified webhook event (`verifyWebhook`'s): on `uninstalled`, `suspended` and
   * `newPermissionsAccepted`, drops the installation's token here and in the shared store
   * (whatever token the store holds) and the organization's remembered installation; the next
   * call mints anew. Resolves to whether the event dropped anything. */
  auth.handleEvent = async function handleEvent(event) {
    if (!(event instanceof native.WebhookEvent)) {
      throw configError('event', 'give the event verifyWebhook(secret, body, signature) returned')
    }
    for (const memo of Object.values(memos)) memo.clear()
    return driver.run(app.handleEvent(event))
  }

  /** Forgets an installation (`{ installationId }`: its token) or an organization
   * (`{ organizationId }`: its remembered installation and that one's token), here and in the
   * shared store, as `handleEvent` does for `uninstalled`. */
  auth.forget = async function forget(target) {
    const [kind, id] = scopeOf(target, 'forget')
    for (const memo of Object.values(memos)) memo.clear()
    await driver.run(start(() => app.forget(kind, id)))
  }

  /** Revokes every cached token (after the mints in flight) and empties the cache: how many
   * (the core's `RevokeAll`: a token already refused with 401 is dropped, not counted). */
  auth.revokeAll = async function revokeAll() {
    for (const memo of Object.values(memos)) memo.clear()
    return driver.run(app.revokeAll())
  }

  /** The app's counters: hits, misses, mints, refreshes, failures (and failuresByKind), waits, ... */
  auth.stats = function stats() {
    const counted = app.stats()
    counted.hits += memoHits
    return counted
  }

  Object.defineProperty(auth, INSPECT, {
    enumerable: false,
    value() {
      const store = app.redisUrl ? `, store ${app.redisUrl}` : ''
      const proxy = driver.transport && driver.transport.proxyShown ? `, proxy ${driver.transport.proxyShown}` : ''
      return `[icr-app auth: appId ${JSON.stringify(appId)}, registry ${app.baseUrl}${proxy}${store}]`
    },
  })
  return auth
}

/** Verifies a webhook delivery: `body` exactly as received (string or Buffer), `signature` the
 * `x-icr-signature-256` header, with the app's webhook `secret`. Returns the verified event (for
 * `auth.handleEvent`); throws a `WebhookError` saying which check failed (answer 403). */
function verifyWebhook(secret, body, signature) {
  if (typeof secret !== 'string' || secret === '') throw configError('secret', 'give the app\'s webhook secret as a string')
  if (typeof body !== 'string' && !(body instanceof Uint8Array)) throw configError('body', 'give the raw request body as a string, a Buffer or a Uint8Array')
  if (signature !== undefined && signature !== null && typeof signature !== 'string') {
    throw configError('signature', 'give the x-icr-signature-256 header as a string')
  }
  try {
    const bytes = typeof body === 'string' || Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    return native.verifyWebhook(secret, bytes, signature ?? undefined)
  } catch (error) {
    throw fromThrown(error)
  }
}

module.exports = {
  createAppAuth,
  verifyWebhook,
  WebhookError,
  IcrError,
  InvalidKeyError,
  ConfigError,
  AuthError,
  NotFoundError,
  RateLimitedError,
  ServerError,
  TransportError,
  SigningError,
}
