// What the same work costs right after the event loop was idle: the addon's four calls for one
// mint (`token()`, `poll()` and its `JSON.parse`, `handleResponse()` with a canned answer, the
// last `poll()` and its `JSON.parse`), and beside them `noCore`'s JavaScript alone (the step's
// and the token's canned texts parsed), each measured after a gap of:
//   none: nothing;  immediate: a `setImmediate`;  spin: 1 ms of a busy loop;
//   sleep: a 1 ms timer (the thread sleeps, as it does while a request is on the wire).
// A cold mint's work after its answer runs in the last case's conditions.
//   node bindings/node/benchmarks/wake.mjs [mints per gap, default 2000]
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { answerHeaders, tokenText } from './canned.mjs'

const here = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(path.join(here, 'index.js'))
const { FakeRegistry } = require(path.join(here, 'testing.js'))
const native = require(path.join(here, 'native.js'))

const registry = new FakeRegistry()
const { appId, privateKey } = registry
registry.close()
const app = new native.NativeApp({ appId, privateKey, baseUrl: 'https://registry.test', signer: false, allowInsecureHttp: false, ownTransport: true, environment: {} })
const answer = (id) => Buffer.from(tokenText(appId, id))
const stepText = app.token('installation', 'template').poll()

const gaps = {
  none: async () => {},
  immediate: () => new Promise((resolve) => setImmediate(resolve)),
  spin: async () => {
    const end = performance.now() + 1
    while (performance.now() < end);
  },
  sleep: () => new Promise((resolve) => setTimeout(resolve, 1)),
}
const ns = () => process.hrtime.bigint()
const n = Number(process.argv[2] || 2000)
let k = 0
for (let round = 1; round <= 2; round++) {
  console.log(`round ${round}, us per mint:`)
  for (const [name, gap] of Object.entries(gaps)) {
    let addon = 0n
    let js = 0n
    for (let i = 0; i < n; i++) {
      const id = `wake-${k++}`
      const body = answer(id)
      // The addon's calls, in two halves as in a mint: before the request and after its answer.
      await gap()
      let t = ns()
      const op = app.token('installation', id)
      const step = JSON.parse(op.poll())
      addon += ns() - t
      await gap()
      t = ns()
      op.handleResponse(step.id, 200, answerHeaders, body)
      JSON.parse(op.poll())
      addon += ns() - t
      // noCore's JavaScript: the same texts parsed, in the same two halves.
      await gap()
      t = ns()
      JSON.parse(stepText)
      js += ns() - t
      await gap()
      t = ns()
      JSON.parse(`{"kind":"done","value":${body.toString()}}`)
      js += ns() - t
    }
    console.log(`  after ${name.padEnd(9)} the addon's calls ${(Number(addon) / n / 1000).toFixed(1)}, noCore's JavaScript ${(Number(js) / n / 1000).toFixed(1)}`)
  }
}
