// CPU time per cold mint with a canned `fetch` (no network, no server): what the package itself
// costs (the core's work, the addon's calls and the JavaScript driver), beside the canned
// fetch and its `response.json()` alone. `process.cpuUsage` is less inflated by the machine's
// load than wall-clock time.
//   node bindings/node/benchmarks/cpu.mjs [package directory (default: this package)] [mints]
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { tokenText } from './canned.mjs'

const dir = path.resolve(process.argv[2] || path.join(path.dirname(fileURLToPath(import.meta.url)), '..'))
const require = createRequire(dir + '/')
const { createAppAuth } = require(path.join(dir, 'index.js'))
const { FakeRegistry } = require(path.join(dir, 'testing.js'))
const registry = new FakeRegistry()
const { appId, privateKey } = registry
registry.close()

const canned = async (url) => {
  const id = String(url).split('/')[5]
  const body = tokenText(appId, id)
  return new Response(body, { status: 200, headers: { 'content-type': 'application/json', date: new Date().toUTCString(), 'content-length': String(body.length) } })
}
const auth = createAppAuth({ appId, privateKey, baseUrl: 'https://registry.test', fetch: canned })
await auth({ type: 'app' })
const n = Number(process.argv[3] || 3000)
let k = 0
const ours = async (count) => { for (let i = 0; i < count; i++) await auth({ type: 'installation', installationId: `inst-${k++}` }) }
const bare = async (count) => {
  for (let i = 0; i < count; i++) await (await canned(`https://registry.test/app/installations/b${i}/accessTokens`)).json()
}
await ours(n)
await bare(n)
for (let round = 0; round < 3; round++) {
  let start = process.cpuUsage()
  await ours(n)
  const a = process.cpuUsage(start)
  start = process.cpuUsage()
  await bare(n)
  const b = process.cpuUsage(start)
  console.log(`per cold mint: the package ${((a.user + a.system) / n).toFixed(1)} us CPU, the canned fetch and json() alone ${((b.user + b.system) / n).toFixed(1)} us`)
}
