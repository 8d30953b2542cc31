// Used by run-tests.sh in a fresh project that installed the packed tarball (CommonJS).
const assert = require('node:assert/strict')
const { createAppAuth } = require('icr-app')
const { FakeRegistry } = require('icr-app/testing')

async function main() {
  const registry = new FakeRegistry()
  try {
    const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
    const token = await auth({ type: 'installation', installationId: registry.installationIds[0] })
    assert.equal(registry.tokenStatus(token.token), 'valid')
    console.log('smoke.cjs: a token from the installed package, mints:', auth.stats().mints)
  } finally {
    registry.close()
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
