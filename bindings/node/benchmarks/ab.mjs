// A cold mint through two copies of the package in one process, against a bare `fetch` POST
// with the body the core sends (`{}`) and against the same POST given a fresh per-request
// `AbortSignal` with its timer (what the driver did before it raced its deadline instead):
// one mint of each in turn (the order rotating), `ROUNDS` rounds of 100 mints each; for each,
// the median and quartiles of the rounds' wall-clock ratio to the bare POST.
//   ROUNDS=40 node bindings/node/benchmarks/ab.mjs [other package directory]
// The other package (a checkout of another commit, its addon built in release) is loaded
// beside this one; without it, only this package is measured. Two more contenders split the
// package's cost in two: `core` drives the core's mint operation with the least JavaScript
// there is (poll, fetch, report, poll: no deadline, no cache check, no result object), and
// `noCore` runs that same JavaScript with the step and the token as canned JSON text instead
// of the addon's calls.
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const load = (dir) => createRequire(path.join(dir, 'index.js'))(path.join(dir, 'index.js'))
const { FakeRegistry } = createRequire(path.join(here, 'testing.js'))(path.join(here, 'testing.js'))
const native = createRequire(path.join(here, 'native.js'))(path.join(here, 'native.js'))

const registry = new FakeRegistry()
const make = (pkg) => pkg.createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
const ours = make(load(here))
const { token: appJwt } = await ours({ type: 'app' })
const headers = { authorization: `Bearer ${appJwt}`, 'x-icr-api-version': '2023-06-16', accept: 'application/json', 'content-type': 'application/json' }
const url = (id) => `${registry.url}/app/installations/${id}/accessTokens`

// The least JavaScript that drives the core's mint: the step's text parsed, sent, the answer
// read and reported, the token's step parsed. `canned` replaces the addon's calls by text.
const app = new native.NativeApp({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url, signer: false, allowInsecureHttp: false, ownTransport: true, environment: {} })
async function leanest(id, canned) {
  const op = canned ? null : app.token('installation', id)
  const step = JSON.parse(canned ? `{"kind":"send","id":0,"method":"POST","url":"${url(id)}","headers":${JSON.stringify(headers)},"body":"{}","purpose":"mint"}` : op.poll())
  const response = await fetch(step.url, { method: step.method, headers: step.headers, body: step.body })
  const body = Buffer.from(await response.arrayBuffer())
  const flat = []
  for (const [name, value] of response.headers) flat.push(name, value)
  if (canned) return JSON.parse(`{"kind":"done","value":${body.toString()}}`).value
  op.handleResponse(step.id, response.status, flat, body)
  return JSON.parse(op.poll()).value
}

const contenders = {
  bare: async (id) => {
    const response = await fetch(url(id), { method: 'POST', headers, body: '{}' })
    await response.json()
  },
  signal: async (id) => {
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(), 30_000)
    try {
      const response = await fetch(url(id), { method: 'POST', headers, body: '{}', signal: timeout.signal })
      await response.json()
    } finally {
      clearTimeout(timer)
    }
  },
  ours: (id) => ours({ type: 'installation', installationId: id }),
  core: (id) => leanest(id, false),
  noCore: (id) => leanest(id, true),
}
if (process.argv[2]) {
  const other = make(load(path.resolve(process.argv[2])))
  await other({ type: 'app' })
  contenders.other = (id) => other({ type: 'installation', installationId: id })
}

// `ONLY=core,noCore` measures only those (for a profiler, one at a time).
const names = process.env.ONLY ? process.env.ONLY.split(',').filter((name) => name in contenders) : Object.keys(contenders)
const perRound = 100
const rounds = Number(process.env.ROUNDS || 40)
const wall = Object.fromEntries(names.map((name) => [name, []]))
// The process's CPU time around each mint (the fake registry's threads included, the same
// work for every contender), which the machine's load inflates less than wall-clock time.
const cpu = Object.fromEntries(names.map((name) => [name, 0]))
for (let round = 0; round < rounds; round++) {
  const total = Object.fromEntries(names.map((name) => [name, 0n]))
  for (let i = 0; i < perRound; i++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(i + j) % names.length]
      const id = registry.addInstallation(`ab ${round} ${i} ${name}`)
      const cpuStart = process.cpuUsage()
      const start = process.hrtime.bigint()
      await contenders[name](id)
      total[name] += process.hrtime.bigint() - start
      const used = process.cpuUsage(cpuStart)
      cpu[name] += used.user + used.system
    }
  }
  for (const name of names) wall[name].push(Number(total[name]) / perRound / 1000)
}
registry.close()

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)]
const spread = (xs, digits) => `${quantile(xs, 0.5).toFixed(digits)} [${quantile(xs, 0.25).toFixed(digits)} .. ${quantile(xs, 0.75).toFixed(digits)}]`
const cpuPerMint = (name) => (cpu[name] / rounds / perRound).toFixed(0)
for (const name of names) {
  const over = name !== 'bare' && wall.bare ? `, over bare ${spread(wall[name].map((x, i) => (x / wall.bare[i] - 1) * 100), 1)} %` : ''
  console.log(`${name.padEnd(6)} ${spread(wall[name], 0)} us a mint${over}, CPU ${cpuPerMint(name)} us (median [quartiles] of ${rounds} rounds)`)
}
