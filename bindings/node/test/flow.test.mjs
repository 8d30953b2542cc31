import { test } from 'node:test'
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { createRequire } from 'node:module'
import { createAppAuth, IcrError, NotFoundError, ConfigError, InvalidKeyError } from 'icr-app'
import { setup } from './helpers.mjs'

test('the app JWT, installation tokens (by id, by organization), the app token', async () => {
  const { registry, auth } = setup()
  try {
    const jwt = await auth({ type: 'app' })
    assert.equal(jwt.type, 'app')
    assert.equal(jwt.appId, registry.appId)
    assert.equal(jwt.token.split('.').length, 3)
    assert.ok(Date.parse(jwt.expiresAt) > Date.now())

    const [id] = registry.installationIds
    const token = await auth({ type: 'installation', installationId: id })
    assert.equal(token.type, 'token')
    assert.equal(token.tokenType, 'installation')
    assert.equal(token.installationId, id)
    assert.equal(token.permissions.organization_info, 'VIEW')
    assert.match(token.token, /^crs_/)
    assert.ok(Date.parse(token.expiresAt) > Date.now())
    assert.equal(registry.tokenStatus(token.token), 'valid')

    // Cached: the same token, no second mint.
    const again = await auth({ type: 'installation', installationId: id })
    assert.equal(again.token, token.token)
    assert.equal(registry.mintCountFor(id), 1)

    // By organization: that organization's installation, one token whichever way it is asked.
    const byOrg = await auth({ type: 'installation', organizationId: registry.organizationIds[0] })
    assert.equal(byOrg.installationId, id)
    assert.equal(registry.mintCountFor(id), 1)

    const appToken = await auth({ type: 'app-token' })
    assert.equal(appToken.tokenType, 'app')
    assert.equal(registry.appTokenMintCount(), 1)
    // `.mintCount`: every token minted, the app's too; a property, read as a number.
    assert.equal(registry.mintCount, 2)
    assert.throws(() => registry.mintCountFor(), TypeError)

    const stats = auth.stats()
    assert.equal(stats.mints, 2)
    assert.ok(stats.hits >= 1)
    assert.equal(stats.failures, 0)
    assert.deepEqual(stats.failuresByKind, {})
    for (const name of ['hits', 'misses', 'mints', 'refreshes', 'failures', 'waits']) assert.equal(typeof stats[name], 'number', name)
  } finally {
    registry.close()
  }
})

test('a token names its installation, organization and app when the answer leaves them out', async () => {
  // The registry's answers to mints, through the real fake, with the ids taken out.
  const stripped = async (input, init) => {
    const response = await fetch(input, init)
    if (!String(input).endsWith('/accessTokens') || !response.ok) return response
    const body = await response.json()
    delete body.installationId
    delete body.organizationId
    delete body.appId
    // The same answer without the ids, its length no longer the original's.
    const headers = new Headers(response.headers)
    headers.delete('content-length')
    return new Response(JSON.stringify(body), { status: response.status, headers })
  }
  const { registry, auth } = setup({ fetch: stripped })
  try {
    const [id, other] = registry.installationIds
    const token = await auth({ type: 'installation', installationId: id })
    assert.equal(token.installationId, id)
    const byOrg = await auth({ type: 'installation', organizationId: registry.organizationIds[1] })
    assert.equal(byOrg.installationId, other)
    assert.equal(byOrg.organizationId, registry.organizationIds[1])
    const appToken = await auth({ type: 'app-token' })
    assert.equal(appToken.appId, registry.appId)
  } finally {
    registry.close()
  }
})

test('auth.fetch, installations(), installation(), revokeAll()', async () => {
  const { registry, auth } = setup()
  try {
    const [id] = registry.installationIds
    const response = await auth.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`)
    assert.ok(response instanceof Response)
    assert.equal(response.status, 200)
    const organization = await response.json()
    assert.equal(organization.id, registry.organizationIds[0])
    const sent = registry.requests().filter((r) => r.path.startsWith('/organizations/'))
    assert.equal(sent.length, 1)
    assert.match(sent[0].headers.authorization, /^Bearer crs_/)
    assert.equal(sent[0].headers['x-icr-api-version'], '2023-06-16')

    // POST with a JSON body.
    const posted = await auth.fetch({ organizationId: registry.organizationIds[0] }, `/organizations/${registry.organizationIds[0]}/inventory/requests/transfer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 1 }),
    })
    assert.ok(posted.status < 500)
    await posted.arrayBuffer()

    const ids = []
    for await (const installation of auth.installations({ limit: 2 })) ids.push(installation.id)
    assert.deepEqual(ids.sort(), [...registry.installationIds].sort())

    const one = await auth.installation(registry.installationIds[2])
    assert.equal(one.id, registry.installationIds[2])
    const viaOrg = await auth.installation({ organizationId: registry.organizationIds[1] })
    assert.equal(viaOrg.id, registry.installationIds[1])

    const token = await auth({ type: 'installation', installationId: id })
    assert.equal(await auth.revokeAll(), 1)
    assert.equal(registry.tokenStatus(token.token), 'revoked')
    const fresh = await auth({ type: 'installation', installationId: id })
    assert.notEqual(fresh.token, token.token)
  } finally {
    registry.close()
  }
})

test('revokeAll passes over tokens the registry already refuses (401): dropped, not counted, no error', async () => {
  const { registry, auth } = setup()
  try {
    const tokens = []
    for (const id of registry.installationIds) tokens.push((await auth({ type: 'installation', installationId: id })).token)
    registry.expireToken(tokens[0])
    registry.reinstall(registry.organizationIds[1])
    assert.equal(registry.tokenStatus(tokens[1]), 'revoked')
    assert.equal(await auth.revokeAll(), 1)
    assert.equal(registry.tokenStatus(tokens[2]), 'revoked')
    // The cache is empty: the next call mints again.
    const before = registry.mintCount
    await auth({ type: 'installation', installationId: registry.installationIds[2] })
    assert.equal(registry.mintCount, before + 1)
  } finally {
    registry.close()
  }
})

test('a 401 to auth.fetch drops the token, mints again and sends once more', async () => {
  const { registry, auth } = setup()
  try {
    const [id] = registry.installationIds
    await auth({ type: 'installation', installationId: id })
    registry.revokeAllTokens()
    const response = await auth.fetch({ installationId: id }, `/organizations/${registry.organizationIds[0]}`)
    assert.equal(response.status, 200)
    await response.text()
    assert.equal(registry.mintCountFor(id), 2)
  } finally {
    registry.close()
  }
})

test('errors are IcrErrors with a status, and name the cause', async () => {
  const { registry, auth } = setup()
  try {
    await assert.rejects(auth({ type: 'installation', installationId: 'no-such-installation' }), (error) => {
      assert.ok(error instanceof NotFoundError)
      assert.ok(error instanceof IcrError)
      assert.equal(error.status, 404)
      assert.equal(error.code, 'not_found')
      return true
    })
    await assert.rejects(auth({ type: 'nope' }), ConfigError)
    await assert.rejects(auth.fetch({ installationId: registry.installationIds[0] }, 'organizations'), ConfigError)
  } finally {
    registry.close()
  }
})

test('a bad key throws InvalidKeyError at once, never quoting it', () => {
  const secretish = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7'
  for (const privateKey of [secretish, `-----BEGIN RSA PRIVATE KEY-----\n${secretish}\n-----END RSA PRIVATE KEY-----\n`, 'crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b']) {
    assert.throws(
      () => createAppAuth({ appId: '1', privateKey, baseUrl: 'http://127.0.0.1:1' }),
      (error) => {
        assert.ok(error instanceof InvalidKeyError, String(error))
        assert.ok(error instanceof IcrError)
        assert.ok(!error.message.includes(secretish.slice(10, 40)))
        assert.ok(!error.message.includes('19c9bd530ccd3e11'))
        assert.ok(!inspect(error).includes(secretish.slice(10, 40)))
        return true
      },
    )
  }
  assert.throws(() => createAppAuth({ appId: '', privateKey: 'x' }), ConfigError)
})

test('the key as PKCS#1, PKCS#8, a Buffer and \\n-escaped (an environment variable)', async () => {
  const { registry } = setup()
  try {
    const { createPrivateKey } = await import('node:crypto')
    const pkcs1 = createPrivateKey(registry.privateKey).export({ type: 'pkcs1', format: 'pem' })
    for (const privateKey of [registry.privateKey, pkcs1, Buffer.from(pkcs1), registry.privateKey.replace(/\n/g, '\\n')]) {
      const auth = createAppAuth({ appId: registry.appId, privateKey, baseUrl: registry.url })
      const token = await auth({ type: 'installation', installationId: registry.installationIds[1] })
      assert.match(token.token, /^crs_/)
    }
  } finally {
    registry.close()
  }
})

test('no key, JWT or token in util.inspect output', async () => {
  const { registry, auth } = setup()
  try {
    const jwt = await auth({ type: 'app' })
    const token = await auth({ type: 'installation', installationId: registry.installationIds[0] })
    for (const shown of [inspect(auth), inspect(jwt), inspect(token), inspect(registry), String(auth)]) {
      assert.ok(!shown.includes(jwt.token), shown)
      assert.ok(!shown.includes(token.token), shown)
      assert.ok(!shown.includes('PRIVATE KEY'), shown)
    }
    // The values themselves are there for the caller.
    assert.equal(JSON.parse(JSON.stringify(token)).token, token.token)
  } finally {
    registry.close()
  }
})

test('CommonJS and ESM give the same objects', () => {
  const require = createRequire(import.meta.url)
  const cjs = require('icr-app')
  assert.equal(cjs.createAppAuth, createAppAuth)
  assert.equal(typeof require('icr-app/testing').FakeRegistry, 'function')
})

test('auth.fetch sends the body as given: bytes that are not UTF-8, and text', async () => {
  // The request goes to the real fake registry; the fetch passed records what it was given.
  const given = []
  const recording = async (url, init) => {
    given.push(init.body === undefined ? undefined : Buffer.from(typeof init.body === 'string' ? Buffer.from(init.body) : init.body))
    return fetch(url, init)
  }
  const { registry, auth } = setup({ fetch: recording })
  try {
    const org = registry.organizationIds[0]
    const bytes = Buffer.from([0xff, 0x00, 0x80, 0xfe, 0x7b, 0x7d, 0xc3])
    const binary = await auth.fetch({ organizationId: org }, `/organizations/${org}`, { method: 'PUT', body: bytes })
    await binary.arrayBuffer()
    const text = await auth.fetch({ organizationId: org }, `/organizations/${org}`, { method: 'PUT', body: '{"name":"Zoë ✓"}' })
    await text.arrayBuffer()
    const sent = given.filter((body) => body !== undefined && !body.equals(Buffer.from('{}')))
    assert.deepEqual(sent.map((b) => b.toString('hex')), [bytes.toString('hex'), Buffer.from('{"name":"Zoë ✓"}').toString('hex')])
  } finally {
    registry.close()
  }
})
