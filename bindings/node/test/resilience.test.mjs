import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createPrivateKey, sign } from 'node:crypto'
import { createAppAuth, IcrError, ConfigError, TransportError, SigningError } from 'icr-app'
import { FakeRegistry } from 'icr-app/testing'
import { setup, otherHost } from './helpers.mjs'

for (const skew of [7200, -7200]) {
  test(`two hours of clock skew (${skew > 0 ? 'registry ahead' : 'registry behind'})`, async () => {
    const { registry, auth } = setup()
    try {
      registry.setClockOffset(skew)
      const [id] = registry.installationIds
      const token = await auth({ type: 'installation', installationId: id })
      assert.equal(registry.tokenStatus(token.token), 'valid')
      const response = await auth.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`)
      assert.equal(response.status, 200)
      await response.text()
      const ids = []
      for await (const installation of auth.installations()) ids.push(installation.id)
      assert.equal(ids.length, 3)
    } finally {
      registry.close()
    }
  })
}

test('503 then 429 with Retry-After are retried', async () => {
  const { registry, auth } = setup()
  try {
    const [id] = registry.installationIds
    registry.injectStatus(503, { times: 1, pathPrefix: `/app/installations/${id}/accessTokens` })
    registry.injectStatus(429, { retryAfter: 1, times: 1, pathPrefix: `/app/installations/${id}/accessTokens` })
    const token = await auth({ type: 'installation', installationId: id })
    assert.equal(registry.tokenStatus(token.token), 'valid')
    const statuses = registry.requests().filter((r) => r.path.endsWith('/accessTokens')).map((r) => r.status)
    assert.deepEqual(statuses, [503, 429, 200])
    const stats = auth.stats()
    assert.equal(stats.failures, 2)
    assert.deepEqual(stats.failuresByKind, { server: 1, rate_limited: 1 })
  } finally {
    registry.close()
  }
})

test('a 500 that persists is a ServerError with its status, after the retries', async () => {
  const { registry, auth } = setup({ retryAttempts: 2 })
  try {
    const [id] = registry.installationIds
    registry.injectStatus(500, { times: 5, pathPrefix: `/app/installations/${id}/accessTokens` })
    await assert.rejects(auth({ type: 'installation', installationId: id }), (error) => {
      assert.ok(error instanceof IcrError)
      assert.equal(error.status, 500)
      return true
    })
  } finally {
    registry.close()
  }
})

test('500 concurrent cold calls make one mint', async () => {
  const { registry, auth } = setup()
  try {
    const [id] = registry.installationIds
    const tokens = await Promise.all(Array.from({ length: 500 }, () => auth({ type: 'installation', installationId: id })))
    assert.equal(new Set(tokens.map((t) => t.token)).size, 1)
    assert.equal(registry.mintCountFor(id), 1)
    assert.equal(registry.mintCount, 1)
    assert.equal(auth.stats().mints, 1)
  } finally {
    registry.close()
  }
})

test('an aborted caller releases the mint for the others at once', { timeout: 20000 }, async () => {
  const { registry, auth } = setup()
  try {
    const [id] = registry.installationIds
    // The first mint is held by the registry far longer than this test may take.
    registry.injectDelay(60, { times: 1, pathPrefix: `/app/installations/${id}/accessTokens` })
    const controller = new AbortController()
    const first = auth({ type: 'installation', installationId: id, signal: controller.signal })
    // Let the first call send its mint, then start a second that waits for it.
    await new Promise((resolve) => setImmediate(resolve))
    while (!registry.requests().some((r) => r.path.endsWith('/accessTokens'))) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    const second = auth({ type: 'installation', installationId: id })
    await new Promise((resolve) => setImmediate(resolve))
    controller.abort()
    await assert.rejects(first, (error) => error.name === 'AbortError')
    // Without the release the second would wait for the held mint (60 s, beyond the test's
    // timeout): it mints for itself instead.
    const token = await second
    assert.equal(registry.tokenStatus(token.token), 'valid')
  } finally {
    registry.close()
  }
})

test('a failing caller (its signer throws) fails alone; the next call signs again', { timeout: 20000 }, async () => {
  const registry = new FakeRegistry()
  try {
    const key = createPrivateKey(registry.privateKey)
    let calls = 0
    const auth = createAppAuth({
      appId: registry.appId,
      baseUrl: registry.url,
      signer: async (message) => {
        calls++
        if (calls === 1) throw new Error('KMS unavailable')
        return sign('sha256', message, key)
      },
    })
    const [id] = registry.installationIds
    const [a, b] = await Promise.allSettled([
      auth({ type: 'installation', installationId: id }),
      auth({ type: 'installation', installationId: id }),
    ])
    assert.equal(a.status, 'rejected')
    assert.ok(a.reason instanceof SigningError, String(a.reason))
    assert.match(a.reason.message, /KMS unavailable/)
    // The other caller was not left waiting: it failed with the same signing, or signed again.
    if (b.status === 'rejected') assert.ok(b.reason instanceof IcrError)
    // The next call asks the signer again.
    const before = calls
    const jwt = await auth({ type: 'app' })
    assert.equal(calls, before + 1)
    assert.equal(jwt.token.split('.').length, 3)
    const token = await auth({ type: 'installation', installationId: registry.installationIds[1] })
    assert.equal(registry.tokenStatus(token.token), 'valid')
  } finally {
    registry.close()
  }
})

test('a dropped connection is retried; one that keeps dropping is a TransportError', async () => {
  const { registry, auth } = setup({ retryAttempts: 2 })
  try {
    const [id, id2] = registry.installationIds
    registry.injectDropConnection({ times: 1, pathPrefix: `/app/installations/${id}/accessTokens` })
    const token = await auth({ type: 'installation', installationId: id })
    assert.equal(registry.tokenStatus(token.token), 'valid')
    registry.injectDropConnection({ times: 5, pathPrefix: `/app/installations/${id2}/accessTokens` })
    await assert.rejects(auth({ type: 'installation', installationId: id2 }), TransportError)
  } finally {
    registry.close()
  }
})

test('minLife is honoured', async () => {
  const { registry, auth } = setup()
  try {
    const [id] = registry.installationIds
    const first = await auth({ type: 'installation', installationId: id, minLife: 60 })
    assert.ok(Date.parse(first.expiresAt) - Date.now() >= 60 * 1000)
    const cached = await auth({ type: 'installation', installationId: id, minLife: 3600 })
    assert.equal(cached.token, first.token)
    assert.ok(Date.parse(cached.expiresAt) - Date.now() >= 3600 * 1000)
    // A minimum no token of this registry can meet is an error that says so, without a mint.
    await assert.rejects(auth({ type: 'installation', installationId: id, minLife: 3 * 3600 }), (error) => {
      assert.ok(error instanceof ConfigError)
      assert.match(error.message, /minimum token life/)
      return true
    })
    assert.equal(registry.mintCountFor(id), 1)
    await assert.rejects(auth({ type: 'installation', installationId: id, minLife: -1 }), ConfigError)
  } finally {
    registry.close()
  }
})

test('tokens never go to another host: absolute URLs, //host/x, redirects', async () => {
  const { registry, auth } = setup()
  const other = await otherHost()
  try {
    const [id] = registry.installationIds
    await assert.rejects(auth.fetch({ installationId: id }, `${other.url}/steal`), IcrError)
    await assert.rejects(auth.fetch({ installationId: id }, `http://localhost:${other.port}/steal`), IcrError)
    await assert.rejects(auth.fetch({ installationId: id }, new URL('/steal', other.url)), IcrError)
    // A scheme-relative path: a path on the registry, or refused; never the other host.
    const relative = await auth.fetch({ installationId: id }, `//127.0.0.1:${other.port}/steal`).catch((error) => error)
    if (relative instanceof Response) await relative.arrayBuffer()
    else assert.ok(relative instanceof IcrError, String(relative))

    // The registry redirects a request elsewhere: the 3xx is the answer, not followed.
    registry.injectRedirect(`${other.url}/redirected`, { times: 1, pathPrefix: '/organizations/' })
    const redirected = await auth.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`)
    assert.equal(redirected.status, 302)
    await redirected.arrayBuffer()

    // A redirect answering a mint is not followed either.
    const [, id2] = registry.installationIds
    registry.injectRedirect(`${other.url}/mint`, { status: 307, times: 1, pathPrefix: `/app/installations/${id2}/accessTokens` })
    await auth({ type: 'installation', installationId: id2 }).catch((error) => assert.ok(error instanceof IcrError))

    // With the user's fetch following redirects itself, the package still sends manual.
    const followed = createAppAuth({
      appId: registry.appId,
      privateKey: registry.privateKey,
      baseUrl: registry.url,
      fetch: (input, init) => fetch(input, { ...init, redirect: init.redirect }),
    })
    registry.injectRedirect(`${other.url}/again`, { times: 1, pathPrefix: '/organizations/' })
    const again = await followed.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`)
    assert.equal(again.status, 302)
    await again.arrayBuffer()

    assert.deepEqual(other.seen, [])
  } finally {
    await other.close()
    registry.close()
  }
})

test('a plain-http registry that is not loopback is refused without allowInsecureHttp', async () => {
  const seen = []
  const auth = createAppAuth({
    appId: '1',
    privateKey: new FakeRegistry().privateKey,
    baseUrl: 'http://registry.example',
    retryAttempts: 1,
    fetch: async (input) => {
      seen.push(input)
      return new Response('{}')
    },
  })
  await assert.rejects(auth({ type: 'installation', installationId: 'x' }), (error) => {
    assert.ok(error instanceof IcrError)
    return true
  })
  assert.deepEqual(seen, [])
})

test('a KMS signer on node:crypto signs tokens the registry accepts', async () => {
  const registry = new FakeRegistry()
  try {
    const key = createPrivateKey(registry.privateKey)
    let signatures = 0
    const auth = createAppAuth({
      appId: registry.appId,
      baseUrl: registry.url,
      signer: async (message) => {
        signatures++
        assert.ok(message instanceof Uint8Array)
        return sign('sha256', message, key)
      },
    })
    const jwt = await auth({ type: 'app' })
    assert.equal(jwt.token.split('.').length, 3)
    const tokens = await Promise.all(registry.installationIds.map((installationId) => auth({ type: 'installation', installationId })))
    for (const token of tokens) assert.equal(registry.tokenStatus(token.token), 'valid')
    // One signature serves every call while the JWT is valid.
    assert.equal(signatures, 1)
    assert.throws(() => createAppAuth({ appId: registry.appId, baseUrl: registry.url, signer: 'nope' }), ConfigError)
    assert.throws(() => createAppAuth({ appId: registry.appId, baseUrl: registry.url }), ConfigError)
  } finally {
    registry.close()
  }
})

test('the user\'s fetch performs every request', async () => {
  const { registry } = setup()
  try {
    const urls = []
    const auth = createAppAuth({
      appId: registry.appId,
      privateKey: registry.privateKey,
      baseUrl: registry.url,
      fetch: (input, init) => {
        urls.push(new URL(input).pathname)
        return fetch(input, init)
      },
    })
    await auth({ type: 'installation', installationId: registry.installationIds[0] })
    assert.deepEqual(urls, [`/app/installations/${registry.installationIds[0]}/accessTokens`])
  } finally {
    registry.close()
  }
})

test('auth.fetch with an aborted init.signal rejects with its reason and releases the mint', { timeout: 20000 }, async () => {
  let minting
  const sent = new Promise((resolve) => {
    minting = resolve
  })
  const { registry, auth } = setup({
    fetch: (input, init) => {
      if (String(input).endsWith('/accessTokens')) minting()
      return fetch(input, init)
    },
  })
  try {
    const [id] = registry.installationIds
    registry.injectDelay(60, { times: 1, pathPrefix: `/app/installations/${id}/accessTokens` })
    const controller = new AbortController()
    const pending = auth.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`, { signal: controller.signal })
    await sent
    // Abort once the registry holds the mint (it records a request when it arrives).
    while (!registry.requests().some((r) => r.path.endsWith('/accessTokens'))) await new Promise((resolve) => setTimeout(resolve, 5))
    controller.abort()
    await assert.rejects(pending, (error) => error.name === 'AbortError')
    const response = await auth.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`)
    assert.equal(response.status, 200)
    await response.arrayBuffer()
  } finally {
    registry.close()
  }
})

test('FakeRegistry.start with a skewed clock and a short token lifetime', async () => {
  const registry = await FakeRegistry.start({ clockOffset: -7200, tokenLifetime: 1800 })
  try {
    const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
    const token = await auth({ type: 'installation', installationId: registry.installationIds[0] })
    assert.equal(registry.tokenStatus(token.token), 'valid')
    assert.ok(registry.mintCount >= 1)
  } finally {
    registry.close()
  }
})

test('an exchange that takes longer than the timeout fails as a timeout, each of several at once; the next gets a whole timeout', { timeout: 20000 }, async () => {
  const { registry, auth } = setup({ timeout: 0.4, retryAttempts: 1 })
  try {
    const [a, b, c] = registry.installationIds
    registry.injectDelay(3, { times: 2, pathPrefix: '/app/installations/' })
    // Two exchanges started together: both time out (an answer after the delay would have
    // been a token).
    const results = await Promise.allSettled([
      auth({ type: 'installation', installationId: a }),
      auth({ type: 'installation', installationId: b }),
    ])
    for (const result of results) {
      assert.equal(result.status, 'rejected')
      assert.ok(result.reason instanceof TransportError, String(result.reason))
      assert.equal(result.reason.kind, 'timeout')
    }
    // The next exchange gets a whole timeout again, and succeeds (another installation: the
    // core holds a failed mint's error until its retry time).
    const token = await auth({ type: 'installation', installationId: c })
    assert.match(token.token, /^crs_/)
  } finally {
    registry.close()
  }
})
