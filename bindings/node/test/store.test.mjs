// The shared token store: processes (here, apps) on one Redis share one mint per installation.
// Starts its own redis-server on a free loopback port; skipped without one on PATH.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import net from 'node:net'
import { createPrivateKey, randomBytes, sign } from 'node:crypto'
import { inspect } from 'node:util'
import { createAppAuth, ConfigError, verifyWebhook, WebhookError } from 'icr-app'
import { FakeRegistry } from 'icr-app/testing'

function hasRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

async function freePort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function startRedis(password) {
  const port = await freePort()
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
  if (password) args.push('--requirepass', password)
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (up) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { url: `redis://${password ? `:${password}@` : ''}127.0.0.1:${port}`, stop: () => child.kill() }
}

const skip = hasRedis() ? false : 'redis-server is not on PATH'

test('apps sharing a Redis mint once per installation', { skip }, async () => {
  const registry = new FakeRegistry()
  const password = 'redis-secret-9f2b'
  const redis = await startRedis(password)
  try {
    const make = () => createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url, redisUrl: redis.url })
    const fleet = [make(), make(), make()]
    const [id] = registry.installationIds
    const tokens = await Promise.all(fleet.flatMap((auth) => Array.from({ length: 20 }, () => auth({ type: 'installation', installationId: id }))))
    assert.equal(new Set(tokens.map((t) => t.token)).size, 1)
    assert.equal(registry.mintCountFor(id), 1)
    assert.ok(fleet.some((auth) => auth.stats().sharedHits >= 1))
    // The password is never shown.
    for (const auth of fleet) assert.ok(!inspect(auth).includes(password), inspect(auth))
  } finally {
    redis.stop()
    registry.close()
  }
})

test('a Redis that is down: each app mints alone, no caller fails', { skip }, async () => {
  const registry = new FakeRegistry()
  try {
    const url = `redis://127.0.0.1:${await freePort()}`
    const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url, redisUrl: url })
    const token = await auth({ type: 'installation', installationId: registry.installationIds[0] })
    assert.equal(registry.tokenStatus(token.token), 'valid')
    assert.ok(auth.stats().sharedFallbacks >= 1)
  } finally {
    registry.close()
  }
})

test('with a signer, the store needs storeKey; with it, signers share', { skip }, async () => {
  const registry = new FakeRegistry()
  const redis = await startRedis()
  try {
    const key = createPrivateKey(registry.privateKey)
    const signer = async (message) => sign('sha256', message, key)
    assert.throws(() => createAppAuth({ appId: registry.appId, baseUrl: registry.url, signer, redisUrl: redis.url }), (error) => {
      assert.ok(error instanceof ConfigError)
      assert.match(error.message, /storeKey/)
      return true
    })
    assert.throws(() => createAppAuth({ appId: registry.appId, baseUrl: registry.url, redisUrl: 'http://not-redis' }), ConfigError)
    const storeKey = randomBytes(32)
    const a = createAppAuth({ appId: registry.appId, baseUrl: registry.url, signer, storeKey, redisUrl: redis.url })
    const b = createAppAuth({ appId: registry.appId, baseUrl: registry.url, signer, storeKey, redisUrl: redis.url })
    const [id] = registry.installationIds
    const first = await a({ type: 'installation', installationId: id })
    const second = await b({ type: 'installation', installationId: id })
    assert.equal(second.token, first.token)
    assert.equal(registry.mintCountFor(id), 1)
  } finally {
    redis.stop()
    registry.close()
  }
})

test('an uninstalled event handled by an app that never held the token: the next app mints anew', { skip }, async () => {
  const registry = new FakeRegistry()
  const redis = await startRedis()
  try {
    const make = () => createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url, redisUrl: redis.url, redisTimeout: 5 })
    const [id] = registry.installationIds
    const first = await make()({ type: 'installation', installationId: id })
    // Another process of the fleet shares it: no mint.
    assert.equal((await make()({ type: 'installation', installationId: id })).token, first.token)
    assert.equal(registry.mintCountFor(id), 1)
    const { body, signature } = registry.webhookDelivery(registry.webhookSecret, 'uninstalled', id)
    const event = verifyWebhook(registry.webhookSecret, body, signature)
    assert.equal(event.event, 'uninstalled')
    assert.equal(event.installationId, id)
    // The receiver never held the token: the delete in the store is unconditional.
    assert.equal(await make().handleEvent(event), true)
    const fresh = await make()({ type: 'installation', installationId: id })
    assert.notEqual(fresh.token, first.token)
    assert.equal(registry.mintCountFor(id), 2)
    // Other events drop nothing.
    const installed = registry.webhookDelivery(registry.webhookSecret, 'installed', id)
    const holder = make()
    const held = await holder({ type: 'installation', installationId: id })
    assert.equal(await holder.handleEvent(verifyWebhook(registry.webhookSecret, installed.body, installed.signature)), false)
    assert.equal((await holder({ type: 'installation', installationId: id })).token, held.token)
    // forget by hand does what uninstalled does, in this process too.
    await holder.forget({ installationId: id })
    assert.notEqual((await holder({ type: 'installation', installationId: id })).token, held.token)
    assert.equal(registry.mintCountFor(id), 3)
  } finally {
    redis.stop()
    registry.close()
  }
})

test('a delivery that fails verification is a WebhookError naming the check, never the secret', async () => {
  const registry = new FakeRegistry()
  try {
    const [id] = registry.installationIds
    const { body, signature } = registry.webhookDelivery(registry.webhookSecret, 'uninstalled', id)
    assert.throws(() => verifyWebhook('another-secret-0123456789', body, signature), (error) => {
      assert.ok(error instanceof WebhookError, String(error))
      assert.equal(error.code, 'webhook')
      assert.ok(!error.message.includes('another-secret-0123456789'), error.message)
      return true
    })
    assert.throws(() => verifyWebhook(registry.webhookSecret, body, undefined), WebhookError)
    const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
    await assert.rejects(auth.handleEvent({ event: 'uninstalled' }), ConfigError)
    // Without a store, handleEvent drops the token in this process.
    const before = await auth({ type: 'installation', installationId: id })
    assert.equal(await auth.handleEvent(verifyWebhook(registry.webhookSecret, body, signature)), true)
    assert.notEqual((await auth({ type: 'installation', installationId: id })).token, before.token)
  } finally {
    registry.close()
  }
})
