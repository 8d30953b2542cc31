// A cold mint through two copies of the package in one process, against a bare `fetch` POST
// with the body the core sends (`{}`) and against the same POST given a fresh per-request
// `AbortSignal` with its timer (what the driver did before it raced its deadline instead):
// one mint of each in turn (the order rotating), `ROUNDS` rounds of 100 mints each; for each,
// the median and quartiles of the rounds' wall-clock ratio to the bare POST.
//   node bindings/node/benchmarks/ab.mjs [other package directory]
// The other package (a checkout of another commit, its addon built in release) is loaded
// beside this one; without it, only this package is measured.
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const load = (dir) => createRequire(path.join(dir, 'index.js'))(path.join(dir, 'index.js'))
const { FakeRegistry } = createRequire(path.join(here, 'testing.js'))(path.join(here, 'testing.js'))

const registry = new FakeRegistry()
const make = (pkg) => pkg.createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
const ours = make(load(here))
const { token: appJwt } = await ours({ type: 'app' })
const headers = { authorization: `Bearer ${appJwt}`, 'x-icr-api-version': '2023-06-16', accept: 'application/json', 'content-type': 'application/json' }
const url = (id) => `${registry.url}/app/installations/${id}/accessTokens`

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
}
if (process.argv[2]) {
  const other = make(load(path.resolve(process.argv[2])))
  await other({ type: 'app' })
  contenders.other = (id) => other({ type: 'installation', installationId: id })
}

const names = Object.keys(contenders)
const perRound = 100
const rounds = Number(process.env.ROUNDS || 40)
const wall = Object.fromEntries(names.map((name) => [name, []]))
for (let round = 0; round < rounds; round++) {
  const total = Object.fromEntries(names.map((name) => [name, 0n]))
  for (let i = 0; i < perRound; i++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(i + j) % names.length]
      const id = registry.addInstallation(`ab ${round} ${i} ${name}`)
      const start = process.hrtime.bigint()
      await contenders[name](id)
      total[name] += process.hrtime.bigint() - start
    }
  }
  for (const name of names) wall[name].push(Number(total[name]) / perRound / 1000)
}
registry.close()

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)]
const spread = (xs, digits) => `${quantile(xs, 0.5).toFixed(digits)} [${quantile(xs, 0.25).toFixed(digits)} .. ${quantile(xs, 0.75).toFixed(digits)}]`
console.log(`bare fetch POST with {}: ${spread(wall.bare, 0)} us a mint (median [quartiles] of ${rounds} rounds)`)
for (const name of names.slice(1)) {
  const over = wall[name].map((x, i) => (x / wall.bare[i] - 1) * 100)
  console.log(`${name.padEnd(6)} ${spread(wall[name], 0)} us, over bare ${spread(over, 1)} %`)
}
