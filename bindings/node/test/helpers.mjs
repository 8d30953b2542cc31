// Shared by the tests: a fake registry per test, and a plain loopback server that records
// whatever reaches it (a host a token must never reach).
import http from 'node:http'
import { createAppAuth } from 'icr-app'
import { FakeRegistry } from 'icr-app/testing'

export function setup(options = {}) {
  const registry = new FakeRegistry()
  const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url, ...options })
  return { registry, auth }
}

/** A loopback server answering 200 to everything and recording each request's headers. */
export async function otherHost() {
  const seen = []
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers })
    res.end('ok')
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}
