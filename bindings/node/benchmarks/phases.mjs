// Where a cold mint's time goes, phase by phase, for the `core` and `noCore` contenders of
// `ab.mjs` (the core's mint driven by the least JavaScript there is, and that same JavaScript
// with canned step and token texts), one of each in turn against one fake registry:
//   start: `app.token()` and the first `poll()` (canned: the step's text), `JSON.parse`d;
//   fetch: until the answer's headers are in;  body: the answer read as bytes;
//   headers: the answer's headers flattened;   report: `handleResponse()`;
//   done: the last `poll()` and its `JSON.parse` (canned: the token's text parsed).
// With `PROBE=1`, the operation's `done` getter (a call into the addon that does nothing) is
// timed just before `handleResponse()`, as `probe`: what the first call after the answer costs.
// Then the addon's four calls alone, in a synchronous loop with a canned answer (no fetch, no
// event loop between them): what they cost when nothing else runs in between.
//   [PROBE=1] node bindings/node/benchmarks/phases.mjs [mints, default 2000]
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { answerHeaders, tokenText } from './canned.mjs'

const here = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(path.join(here, 'index.js'))
const { createAppAuth } = require(path.join(here, 'index.js'))
const { FakeRegistry } = require(path.join(here, 'testing.js'))
const native = require(path.join(here, 'native.js'))

const registry = new FakeRegistry()
const { appId } = registry
const { token: appJwt } = await createAppAuth({ appId, privateKey: registry.privateKey, baseUrl: registry.url })({ type: 'app' })
const headers = { authorization: `Bearer ${appJwt}`, 'x-icr-api-version': '2023-06-16', accept: 'application/json', 'content-type': 'application/json' }
const url = (id) => `${registry.url}/app/installations/${id}/accessTokens`
const app = new native.NativeApp({ appId, privateKey: registry.privateKey, baseUrl: registry.url, signer: false, allowInsecureHttp: false, ownTransport: true, environment: {} })
const ns = () => process.hrtime.bigint()
const probe = process.env.PROBE === '1'
const PHASES = ['start', 'fetch', 'body', 'headers', ...(probe ? ['probe'] : []), 'report', 'done']

/** One mint as `ab.mjs`'s `core` (or, `canned`, `noCore`) makes it, its phases added to `into`. */
async function mint(id, canned, into) {
  let t = ns()
  const lap = (phase) => {
    const now = ns()
    into[phase] += now - t
    t = now
  }
  const op = canned ? null : app.token('installation', id)
  const step = JSON.parse(canned ? `{"kind":"send","id":0,"method":"POST","url":"${url(id)}","headers":${JSON.stringify(headers)},"body":"{}","purpose":"mint"}` : op.poll())
  lap('start')
  const response = await fetch(step.url, { method: step.method, headers: step.headers, body: step.body })
  lap('fetch')
  const body = Buffer.from(await response.arrayBuffer())
  lap('body')
  const flat = []
  for (const [name, value] of response.headers) flat.push(name, value)
  lap('headers')
  if (probe) {
    if (!canned && op.done) throw new Error('done too early')
    lap('probe')
  }
  if (!canned) op.handleResponse(step.id, response.status, flat, body)
  lap('report')
  const token = canned ? JSON.parse(`{"kind":"done","value":${body.toString()}}`).value : JSON.parse(op.poll()).value
  lap('done')
  if (typeof token.token !== 'string') throw new Error('no token')
}

const mints = Number(process.argv[2] || 2000)
const show = (name, sums, n) => `${name.padEnd(6)} ${PHASES.map((p) => `${p} ${(Number(sums[p]) / n / 1000).toFixed(1)}`).join(', ')} us`
for (let round = 0; round < 2; round++) {
  const sums = { core: {}, noCore: {} }
  for (const name of Object.keys(sums)) for (const p of PHASES) sums[name][p] = 0n
  for (let i = 0; i < mints; i++) {
    for (const canned of i % 2 ? [false, true] : [true, false]) {
      await mint(registry.addInstallation(`phases ${round} ${i} ${canned}`), canned, canned ? sums.noCore : sums.core)
    }
  }
  console.log(`round ${round + 1}, a mint in real round trips:`)
  for (const name of Object.keys(sums)) console.log(`  ${show(name, sums[name], mints)}`)
}
registry.close()

// The addon's calls alone, back to back, with a canned answer.
const answer = (id) => Buffer.from(tokenText(appId, id))
let k = 0
for (let round = 0; round < 2; round++) {
  const sums = { token: 0n, poll: 0n, report: 0n, done: 0n }
  const n = mints * 5
  for (let i = 0; i < n; i++) {
    const id = `sync-${k++}`
    const body = answer(id)
    const a = ns()
    const op = app.token('installation', id)
    const b = ns()
    const step = JSON.parse(op.poll())
    const c = ns()
    op.handleResponse(step.id, 200, answerHeaders, body)
    const d = ns()
    JSON.parse(op.poll())
    const e = ns()
    sums.token += b - a
    sums.poll += c - b
    sums.report += d - c
    sums.done += e - d
  }
  console.log(`round ${round + 1}, the addon's calls alone: ${Object.entries(sums).map(([p, v]) => `${p} ${(Number(v) / n / 1000).toFixed(1)}`).join(', ')} us`)
}
