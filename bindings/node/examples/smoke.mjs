// Used by run-tests.sh in a fresh project that installed the packed tarball (ESM).
import assert from 'node:assert/strict'
import { createAppAuth } from 'icr-app'
import { FakeRegistry } from 'icr-app/testing'

const registry = new FakeRegistry()
try {
  const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
  const response = await auth.fetch({ organizationId: registry.organizationIds[0] }, `/organizations/${registry.organizationIds[0]}`)
  assert.equal(response.status, 200)
  console.log('smoke.mjs: organization', (await response.json()).fullName)
} finally {
  registry.close()
}
