'use strict'
// The package's own transport, on node:http, node:https and node:tls, used in place of `fetch`
// when the registry is reached through a proxy or with extra trusted CA certificates (Node 20's
// global fetch honours neither, and the package has no runtime dependency to bring an undici
// dispatcher), and the user passed no `fetch` of their own. Which proxy, if any, is the core's
// decision (`proxy`, `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`, loopback never proxied),
// made once for the registry by the addon; this file only carries the bytes:
// - an https registry through the proxy: `CONNECT host:port` (with `Proxy-Authorization: Basic`
//   when the proxy URL has credentials), then TLS end to end over the tunnel;
// - a plain http registry through the proxy (only with `allowInsecureHttp`; the addon refuses it
//   otherwise): the request in absolute form to the proxy;
// - no proxy: straight to the registry (the extra CA certificates trusted).
// It returns standard `Response` objects and never follows a redirect. The proxy's credentials
// are never in an error: the proxy is named as `scheme://host:port`.

const http = require('node:http')
const https = require('node:https')
const tls = require('node:tls')
const net = require('node:net')
const { Readable } = require('node:stream')
const { X509Certificate } = require('node:crypto')

/** A failure whose transport kind (`connect`, ...) is known, with a message free of credentials. */
class TransportFailure extends Error {
  constructor(kind, message, code) {
    super(message)
    this.icrKind = kind
    if (code) this.code = code
  }
}

function unbracket(host) {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

function defaultPort(url) {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
}

/** A `Response` for a node:http answer (its body streamed). */
function toResponse(res, method) {
  const headers = new Headers()
  const raw = res.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i], raw[i + 1])
  const status = res.statusCode
  const empty = method === 'HEAD' || status === 204 || status === 205 || status === 304
  if (empty) res.resume()
  return new Response(empty ? null : Readable.toWeb(res), { status, statusText: res.statusMessage, headers })
}

/** Sends one request with node:http(s) (`options` as for `http.request`) and resolves with its
 * `Response` once the headers are in. */
function exchange(lib, options, body, signal) {
  return new Promise((resolve, reject) => {
    const req = lib.request({ ...options, signal })
    req.once('response', (res) => {
      try {
        resolve(toResponse(res, options.method))
      } catch (error) {
        res.destroy()
        reject(error)
      }
    })
    req.once('error', reject)
    req.end(body)
  })
}

class NodeTransport {
  /**
   * @param {{ proxy: string | null, proxyShown: string | null, caCertificates: Buffer[] }} network
   *   what the addon decided: the registry's proxy (the whole URL, credentials included: never
   *   printed) and how to name it, and the extra CA certificates (DER)
   * @param {(kind: string, message: string) => string} explain the addon's wording of a failure
   *   through the proxy (what to check)
   * @param {number} timeoutMs the exchange's timeout: the caller reports it at the deadline;
   *   this transport ends what is still open a second later
   */
  constructor(network, explain, timeoutMs) {
    const extra = network.caCertificates.map((der) => new X509Certificate(der).toString())
    this.ca = extra.length > 0 ? [...tls.rootCertificates, ...extra] : undefined
    this.explain = explain
    this.proxyShown = network.proxyShown
    this.proxy = null
    if (network.proxy) {
      const url = new URL(network.proxy)
      const credentials = url.username || url.password
        ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
        : null
      this.proxy = { tls: url.protocol === 'https:', host: unbracket(url.hostname), port: defaultPort(url), credentials }
    }
    // Connections straight to the registry are kept alive and reused.
    this.httpsAgent = new https.Agent({ keepAlive: true, ca: this.ca })
    this.httpAgent = new http.Agent({ keepAlive: true })
    this.limitMs = timeoutMs + 1000
    this.fetch = (input, init) => this.send(String(input), init || {})
  }

  /** `fetch` (the `init` fields this package uses), within the transport's limit until the
   * headers are in: nothing is left waiting for them past the exchange's deadline. */
  async send(input, init) {
    const limit = new AbortController()
    const timer = setTimeout(() => limit.abort(new TransportFailure('timeout', 'no answer in time')), this.limitMs)
    const signal = init.signal ? AbortSignal.any([init.signal, limit.signal]) : limit.signal
    try {
      return await this.request(new URL(input), init, signal)
    } finally {
      clearTimeout(timer)
    }
  }

  async request(url, init, signal) {
    const method = init.method || 'GET'
    const headers = rawHeaders(init.headers)
    headers.push('host', url.host)
    const body = init.body === undefined || init.body === null ? undefined : Buffer.from(init.body)
    const path = `${url.pathname}${url.search}`
    const secure = url.protocol === 'https:'
    if (!this.proxy) {
      const options = { method, headers, setHost: false, hostname: unbracket(url.hostname), port: defaultPort(url), path }
      return secure
        ? exchange(https, { ...options, agent: this.httpsAgent, servername: servername(url.hostname) }, body, signal)
        : exchange(http, { ...options, agent: this.httpAgent }, body, signal)
    }
    if (!secure) {
      // Plain http through the proxy (allowInsecureHttp): the request in absolute form.
      if (this.proxy.credentials) headers.push('proxy-authorization', this.proxy.credentials)
      const options = { method, headers, setHost: false, path: url.href }
      return this.viaProxy(() => exchange(http, { ...options, ...this.proxyAddress() }, body, signal))
    }
    const socket = await this.viaProxy(() => this.tunnel(unbracket(url.hostname), defaultPort(url), signal))
    const secured = await this.secure(socket, url.hostname, signal)
    // (No `agent`: with one, node:http would ignore `createConnection`.)
    return exchange(http, { method, headers, setHost: false, path, createConnection: () => secured }, body, signal)
  }

  /** Where the proxy is, for `http.request`: a new connection (over TLS to an `https://`
   * proxy, its certificate checked for the proxy's own name). */
  proxyAddress() {
    const { host, port } = this.proxy
    if (!this.proxy.tls) return { hostname: host, port, agent: false }
    const ca = this.ca
    return { hostname: host, port, createConnection: () => tls.connect({ host, port, ca, servername: servername(host), ALPNProtocols: ['http/1.1'] }) }
  }

  /** `attempt()`, its failure named after the proxy (never its credentials) with what to check. */
  async viaProxy(attempt) {
    try {
      return await attempt()
    } catch (error) {
      if (error && (error.name === 'AbortError' || error instanceof TransportFailure)) throw error
      const code = error && error.code
      const kind = code === 'ECONNRESET' || code === 'EPIPE' ? 'connection_lost' : 'connect'
      const what = `${(error && error.message) || String(error)}`
      throw new TransportFailure(kind, this.explain(kind, `cannot reach the proxy: ${what}`), code)
    }
  }

  /** A socket tunnelled by the proxy to `host:port` (`CONNECT`). */
  tunnel(host, port, signal) {
    const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
    const headers = { host: authority }
    if (this.proxy.credentials) headers['proxy-authorization'] = this.proxy.credentials
    return new Promise((resolve, reject) => {
      const req = http.request({ ...this.proxyAddress(), method: 'CONNECT', path: authority, headers, signal })
      req.once('connect', (res, socket, head) => {
        if (res.statusCode !== 200) {
          socket.destroy()
          const message = `the proxy answered ${res.statusCode} ${res.statusMessage || ''} to CONNECT ${authority}`.trimEnd()
          reject(new TransportFailure('connect', this.explain('connect', message)))
          return
        }
        if (head && head.length > 0) socket.unshift(head)
        resolve(socket)
      })
      req.once('response', (res) => {
        res.resume()
        reject(new TransportFailure('connect', this.explain('connect', `the proxy answered ${res.statusCode} to CONNECT ${authority} without a tunnel`)))
      })
      req.once('error', reject)
      req.end()
    })
  }

  /** TLS to the registry over `socket`, its certificate checked for `hostname`. */
  secure(socket, hostname, signal) {
    return new Promise((resolve, reject) => {
      const secured = tls.connect({ socket, servername: servername(hostname), host: unbracket(hostname), ca: this.ca, ALPNProtocols: ['http/1.1'] })
      const aborted = () => {
        secured.destroy()
        reject(signal.reason)
      }
      if (signal) signal.addEventListener('abort', aborted, { once: true })
      secured.once('secureConnect', () => {
        if (signal) signal.removeEventListener('abort', aborted)
        resolve(secured)
      })
      secured.once('error', (error) => {
        if (signal) signal.removeEventListener('abort', aborted)
        socket.destroy()
        reject(error)
      })
    })
  }

  /** Closes the connections kept alive. */
  close() {
    this.httpsAgent.destroy()
    this.httpAgent.destroy()
  }
}

/** The SNI name for a host (none for an IP address, as TLS requires). */
function servername(hostname) {
  const host = unbracket(hostname)
  return net.isIP(host) ? undefined : host
}

/** `headers` (a flat `[name, value, ...]` array, pairs, a `Headers` or a plain object) as a
 * flat array, the form node:http takes. */
function rawHeaders(headers) {
  if (!headers) return []
  if (Array.isArray(headers)) {
    if (headers.length === 0 || !Array.isArray(headers[0])) return [...headers]
    const flat = []
    for (const [name, value] of headers) flat.push(name, value)
    return flat
  }
  const flat = []
  const entries = typeof headers.entries === 'function' ? headers.entries() : Object.entries(headers)
  for (const [name, value] of entries) flat.push(name, value)
  return flat
}

module.exports = { NodeTransport, TransportFailure }
