// Proxies and private CAs (issue 27) with real servers on loopback: the fake registry behind TLS
// whose certificate comes from a CA made in the test, for `registry.test`, a name only the proxy
// resolves; a real `CONNECT` proxy (the testkit's) that logs each request line and keeps the
// bytes it tunnels. The package's own transport mints and sends through it:
// `createAppAuth({ proxy, caFile })`, the environment's `HTTPS_PROXY` and `SSL_CERT_FILE`,
// `NO_PROXY`, credentials right and wrong, a refusing or unreachable proxy, the
// http-behind-proxy refusal, loopback bypassing a proxy, a user's `fetch` used as it is.
import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import net from 'node:net'
import { createAppAuth, ConfigError, TransportError } from 'icr-app'
import { FakeRegistry, TlsFront, ConnectProxy } from 'icr-app/testing'

const BASE_URL = 'https://registry.test'
const VARIABLES = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy', 'SSL_CERT_FILE']

let saved
beforeEach(() => {
  saved = {}
  for (const name of VARIABLES) {
    saved[name] = process.env[name]
    delete process.env[name]
  }
})
afterEach(() => {
  for (const name of VARIABLES) {
    if (saved[name] === undefined) delete process.env[name]
    else process.env[name] = saved[name]
  }
})

/** The network of one test: the registry, TLS in front of it for registry.test, a CONNECT proxy
 * that resolves registry.test to it, and the CA's certificate in a file. */
function network(proxyOptions = {}) {
  const registry = new FakeRegistry()
  const front = new TlsFront(registry, { host: 'registry.test' })
  const proxy = new ConnectProxy({ resolve: { 'registry.test': front.port }, ...proxyOptions })
  const dir = mkdtempSync(join(tmpdir(), 'icr-node-proxy-'))
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, front.caPem)
  return {
    registry,
    front,
    proxy,
    dir,
    caFile,
    installation: registry.installationIds[0],
    auth(options = {}) {
      return createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: BASE_URL, ...options })
    },
    /** The proxy saw only CONNECT registry.test:443 and, in each tunnel, a TLS handshake and
     * no header, path or secret in clear. */
    assertOnlyTunnels(...secrets) {
      const lines = proxy.requestLines()
      assert.ok(lines.length > 0, 'the proxy saw nothing')
      for (const line of lines) assert.equal(line, 'CONNECT registry.test:443 HTTP/1.1')
      for (const tunnel of proxy.tunneled()) {
        assert.equal(tunnel[0], 0x16, 'a tunnel that does not start with a TLS handshake')
        const text = tunnel.toString('latin1').toLowerCase()
        assert.ok(!text.includes('authorization') && !text.includes('/app/'), 'a header or a path in clear')
        for (const secret of secrets) assert.ok(!text.includes(secret.toLowerCase()), 'a secret in clear')
      }
    },
    close() {
      proxy.close()
      front.close()
      registry.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

test('tokens minted and auth.fetch through the proxy (proxy and caFile)', async () => {
  const n = network()
  try {
    const auth = n.auth({ proxy: n.proxy.url, caFile: n.caFile })
    const token = await auth({ type: 'installation', installationId: n.installation })
    assert.match(token.token, /^crs_/)
    const response = await auth.fetch({ installationId: n.installation }, `/organizations/${n.registry.organizationIds[0]}`)
    assert.ok(response instanceof Response)
    assert.equal(response.status, 200)
    assert.equal((await response.json()).id, n.registry.organizationIds[0])
    const jwt = await auth({ type: 'app' })
    assert.equal(n.registry.mintCountFor(n.installation), 1)
    n.assertOnlyTunnels(token.token, jwt.token)
    // A path under the registry as an absolute URL goes the same way; another host never.
    const again = await auth.fetch({ installationId: n.installation }, `${BASE_URL}/organizations/${n.registry.organizationIds[0]}`)
    assert.equal(again.status, 200)
    await again.arrayBuffer()
    await assert.rejects(auth.fetch({ installationId: n.installation }, 'https://elsewhere.test/x'), ConfigError)
  } finally {
    n.close()
  }
})

for (const variable of ['HTTPS_PROXY', 'https_proxy', 'ALL_PROXY']) {
  test(`the environment's ${variable} and SSL_CERT_FILE`, async () => {
    const n = network()
    try {
      process.env[variable] = n.proxy.url
      process.env.SSL_CERT_FILE = n.caFile
      const auth = n.auth()
      const token = await auth({ type: 'installation', installationId: n.installation })
      n.assertOnlyTunnels(token.token)
    } finally {
      n.close()
    }
  })
}

for (const noProxy of ['registry.test', '.test', '*', 'registry.test:443']) {
  test(`NO_PROXY=${noProxy} sends the registry direct`, async () => {
    const n = network()
    try {
      process.env.HTTPS_PROXY = n.proxy.url
      process.env.NO_PROXY = noProxy
      // Direct to registry.test, which no DNS knows: a connection error, and the proxy saw nothing.
      const auth = n.auth({ caFile: n.caFile, retryAttempts: 1 })
      await assert.rejects(auth({ type: 'installation', installationId: n.installation }), (error) => {
        assert.ok(error instanceof TransportError, String(error))
        assert.equal(error.kind, 'connect')
        return true
      })
      assert.deepEqual(n.proxy.requestLines(), [])
    } finally {
      n.close()
    }
  })
}

test('NO_PROXY for another port or host keeps the proxy', async () => {
  const n = network()
  try {
    process.env.https_proxy = n.proxy.url
    process.env.no_proxy = 'registry.test:8443,other.test'
    await n.auth({ caFile: n.caFile })({ type: 'installation', installationId: n.installation })
    n.assertOnlyTunnels()
  } finally {
    n.close()
  }
})

test('a proxy that requires credentials: sent on CONNECT, a wrong password named without it', async () => {
  const n = network({ user: 'node-user', password: 'N0de-Secret' })
  try {
    const right = n.proxy.urlWithCredentials('node-user', 'N0de-Secret')
    const auth = n.auth({ proxy: right, caFile: n.caFile })
    assert.ok(!inspect(auth).includes('N0de-Secret'))
    const token = await auth({ type: 'installation', installationId: n.installation })
    n.assertOnlyTunnels(token.token, 'N0de-Secret')

    const wrong = n.proxy.urlWithCredentials('node-user', 'Wr0ng-Secret')
    const refused = n.auth({ proxy: wrong, caFile: n.caFile, retryAttempts: 1 })
    assert.ok(!inspect(refused).includes('Wr0ng-Secret'))
    await assert.rejects(refused({ type: 'installation', installationId: n.installation }), (error) => {
      assert.ok(error instanceof TransportError, String(error))
      const text = `${error.message} ${inspect(error)}`
      assert.ok(!text.includes('Wr0ng-Secret') && !text.includes('node-user'), text)
      assert.ok(text.includes(n.proxy.url) && text.includes('407') && text.includes('credentials'), text)
      return true
    })
    // Without credentials at all: 407 too.
    await assert.rejects(n.auth({ proxy: n.proxy.url, caFile: n.caFile, retryAttempts: 1 })({ type: 'app-token' }), /407/)
  } finally {
    n.close()
  }
})

test('a proxy that refuses the tunnel, and one that is not there, are named', async () => {
  const n = network({ forbid: true })
  try {
    const auth = n.auth({ proxy: n.proxy.url, caFile: n.caFile, retryAttempts: 1 })
    await assert.rejects(auth({ type: 'installation', installationId: n.installation }), (error) => {
      assert.ok(error instanceof TransportError, String(error))
      assert.equal(error.kind, 'connect')
      assert.ok(error.message.includes(n.proxy.url) && error.message.includes('refused to open a tunnel'), error.message)
      return true
    })
    // A port nothing listens on (taken, then closed).
    const server = net.createServer()
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address()
    await new Promise((resolve) => server.close(resolve))
    const gone = n.auth({ proxy: `http://someone:Gone-Secret@127.0.0.1:${port}`, caFile: n.caFile, retryAttempts: 1 })
    await assert.rejects(gone({ type: 'app' }).then(() => gone({ type: 'app-token' })), (error) => {
      assert.ok(error instanceof TransportError, String(error))
      assert.equal(error.kind, 'connect')
      assert.ok(error.message.includes(`http://127.0.0.1:${port}`), error.message)
      assert.ok(!error.message.includes('Gone-Secret') && !error.message.includes('someone'), error.message)
      return true
    })
  } finally {
    n.close()
  }
})

test('a plain http registry behind a proxy is refused, and never reaches the proxy', async () => {
  const n = network({ user: 'u', password: 'Http-Secret' })
  try {
    const proxy = n.proxy.urlWithCredentials('u', 'Http-Secret')
    const make = (options) => createAppAuth({ appId: n.registry.appId, privateKey: n.registry.privateKey, baseUrl: 'http://registry.test', ...options })
    assert.throws(() => make({ proxy }), (error) => {
      assert.ok(error instanceof ConfigError, String(error))
      assert.ok(error.message.includes('in clear') && error.message.includes('https://') && error.message.includes('NO_PROXY'), error.message)
      assert.ok(error.message.includes(n.proxy.url) && !error.message.includes('Http-Secret'), error.message)
      return true
    })
    process.env.HTTP_PROXY = proxy
    assert.throws(() => make({}), (error) => error instanceof ConfigError && error.message.includes('HTTP_PROXY') && !error.message.includes('Http-Secret'))
    assert.deepEqual(n.proxy.requestLines(), [])
  } finally {
    n.close()
  }
})

test('a loopback registry never uses the proxy', async () => {
  const n = network()
  try {
    process.env.HTTPS_PROXY = n.proxy.url
    process.env.HTTP_PROXY = n.proxy.url
    process.env.ALL_PROXY = n.proxy.url
    const fromEnv = createAppAuth({ appId: n.registry.appId, privateKey: n.registry.privateKey, baseUrl: n.registry.url })
    await fromEnv({ type: 'installation', installationId: n.installation })
    const explicit = createAppAuth({ appId: n.registry.appId, privateKey: n.registry.privateKey, baseUrl: n.registry.url, proxy: n.proxy.url, caFile: n.caFile })
    const response = await explicit.fetch({ installationId: n.installation }, `/organizations/${n.registry.organizationIds[0]}`)
    assert.equal(response.status, 200)
    await response.json()
    assert.deepEqual(n.proxy.requestLines(), [])
  } finally {
    n.close()
  }
})

test('without the CA the registry is not trusted; a bad caFile is named', async () => {
  const n = network()
  try {
    const auth = n.auth({ proxy: n.proxy.url, retryAttempts: 1 })
    await assert.rejects(auth({ type: 'installation', installationId: n.installation }), (error) => {
      assert.ok(error instanceof TransportError, String(error))
      assert.equal(error.kind, 'connect')
      return true
    })
    assert.equal(n.registry.mintCountFor(n.installation), 0)
    const missing = join(n.dir, 'missing.pem')
    assert.throws(() => n.auth({ caFile: missing }), (error) => error instanceof ConfigError && error.message.includes('missing.pem'))
    const bad = join(n.dir, 'bad.pem')
    writeFileSync(bad, 'hello')
    assert.throws(() => n.auth({ caFile: bad }), (error) => error instanceof ConfigError && error.message.includes('holds no certificate'))
    process.env.SSL_CERT_FILE = missing
    assert.throws(() => n.auth({ proxy: n.proxy.url }), (error) => error instanceof ConfigError && error.message.includes('SSL_CERT_FILE'))
    assert.throws(() => n.auth({ proxy: 'socks5://127.0.0.1:1080' }), ConfigError)
  } finally {
    n.close()
  }
})

test("a user's fetch is used as it is (no proxy, no CA applied by the package)", async () => {
  const n = network()
  try {
    process.env.HTTPS_PROXY = 'http://127.0.0.1:9'
    const seen = []
    const auth = createAppAuth({
      appId: n.registry.appId,
      privateKey: n.registry.privateKey,
      baseUrl: n.registry.url,
      proxy: 'http://127.0.0.1:9',
      fetch: (input, init) => {
        seen.push(String(input))
        return fetch(input, init)
      },
    })
    await auth({ type: 'installation', installationId: n.installation })
    assert.equal(seen.length, 1)
    assert.deepEqual(n.proxy.requestLines(), [])
  } finally {
    n.close()
  }
})

test('an exchange through the proxy keeps the timeout', async () => {
  const n = network()
  // A proxy that accepts the connection and never answers.
  const sockets = []
  const silent = net.createServer((socket) => sockets.push(socket))
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
  try {
    const auth = n.auth({ proxy: `http://127.0.0.1:${silent.address().port}`, caFile: n.caFile, retryAttempts: 1, timeout: 0.3 })
    await assert.rejects(auth({ type: 'app-token' }), (error) => {
      assert.ok(error instanceof TransportError, String(error))
      assert.equal(error.kind, 'timeout')
      return true
    })
  } finally {
    for (const socket of sockets) socket.destroy()
    silent.close()
    n.close()
  }
})

test('an https proxy, trusted through the caFile', async () => {
  const n = network()
  const proxyTls = new TlsFront(n.proxy, { host: '127.0.0.1' })
  try {
    const bundle = join(n.dir, 'bundle.pem')
    writeFileSync(bundle, n.front.caPem + proxyTls.caPem)
    const auth = n.auth({ proxy: `https://127.0.0.1:${proxyTls.port}`, caFile: bundle })
    await auth({ type: 'installation', installationId: n.installation })
    n.assertOnlyTunnels()
  } finally {
    proxyTls.close()
    n.close()
  }
})

test('a plain http loopback registry keeps the global fetch whatever the CA and proxy settings', async () => {
  const n = network()
  const original = globalThis.fetch
  let calls = 0
  globalThis.fetch = (input, init) => {
    calls++
    return original(input, init)
  }
  try {
    process.env.SSL_CERT_FILE = n.caFile
    process.env.HTTPS_PROXY = n.proxy.url
    process.env.HTTP_PROXY = n.proxy.url
    const auth = createAppAuth({ appId: n.registry.appId, privateKey: n.registry.privateKey, baseUrl: n.registry.url, caFile: n.caFile })
    await auth({ type: 'installation', installationId: n.installation })
    assert.equal(calls, 1)
    assert.deepEqual(n.proxy.requestLines(), [])
  } finally {
    globalThis.fetch = original
    n.close()
  }
})
