// Benchmarks of the Node package, in one run against one fake registry on loopback:
//   1. a cached auth({ type: "installation" }) against a hand-written jsonwebtoken + Map + fetch
//      client's cached call (goal: ours no slower);
//   2. a cold mint (a token for an installation not cached yet; the app JWT already signed)
//      against a bare fetch POST to the same endpoint with a JWT made beforehand (goal: at most
//      5 % more), without a body and with the body the core sends (`{}`);
//   3. 500 concurrent cold calls for one installation (ours: 1 mint).
// Each figure is the median of several rounds; the cold mint also as the median of the rounds'
// ratios (each round's contenders measured under the same load) and as CPU time per mint.
// Build the addon in release first:
//   (cd bindings/node && npx napi build --platform --release --js native.js --dts native.d.ts)
//   node bindings/node/benchmarks/bench.mjs
import jwt from 'jsonwebtoken'
import { createAppAuth } from 'icr-app'
import { FakeRegistry } from 'icr-app/testing'

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ns = () => process.hrtime.bigint()

/** The client people write by hand: jsonwebtoken for the JWT, a Map for the tokens, fetch. */
function handWritten(appId, privateKey, baseUrl) {
  const cache = new Map()
  let appJwt = null
  function jwtNow() {
    const now = Math.floor(Date.now() / 1000)
    if (appJwt && appJwt.exp - now > 60) return appJwt.token
    const payload = { iss: appId, iat: now - 60, exp: now + 540, alg: 'RS256' }
    appJwt = { token: jwt.sign(payload, privateKey, { algorithm: 'RS256' }), exp: payload.exp }
    return appJwt.token
  }
  return async function installationToken(installationId) {
    const cached = cache.get(installationId)
    if (cached !== undefined && cached.expiresAt - Date.now() > 60_000) return cached.token
    const response = await fetch(`${baseUrl}/app/installations/${installationId}/accessTokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${jwtNow()}`, 'x-icr-api-version': '2023-06-16', accept: 'application/json' },
    })
    if (!response.ok) throw new Error(`mint: ${response.status}`)
    const body = await response.json()
    cache.set(installationId, { token: body.token, expiresAt: Date.parse(body.expiresAt) })
    return body.token
  }
}

async function cached(registry) {
  const id = registry.installationIds[0]
  const ours = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
  const theirs = handWritten(registry.appId, registry.privateKey, registry.url)
  await ours({ type: 'installation', installationId: id })
  await theirs(id)
  // Batches of each in turn (the order alternating), the median batch of each.
  const calls = 20_000
  const rounds = { ours: [], theirs: [] }
  const both = [
    ['ours', () => ours({ type: 'installation', installationId: id })],
    ['theirs', () => theirs(id)],
  ]
  for (let round = 0; round < 40; round++) {
    for (const [name, call] of round % 2 ? [...both].reverse() : both) {
      const start = ns()
      for (let i = 0; i < calls; i++) await call()
      rounds[name].push(Number(ns() - start) / calls)
    }
  }
  return { ours: median(rounds.ours), theirs: median(rounds.theirs) }
}

async function cold(registry) {
  const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
  // The JWT is signed once, as the bare client's is made beforehand.
  const { token: appJwt } = await auth({ type: 'app' })
  const headers = { authorization: `Bearer ${appJwt}`, 'x-icr-api-version': '2023-06-16', accept: 'application/json' }
  const post = async (installationId, init) => {
    const response = await fetch(`${registry.url}/app/installations/${installationId}/accessTokens`, { method: 'POST', ...init })
    if (!response.ok) throw new Error(`bare mint: ${response.status}`)
    await response.json()
  }
  // Two hand-written POSTs: without a body, and with the body the core sends (`{}`, as ICR's
  // demo app does): Node 20's fetch streams any request body through an async iterable, which
  // costs far more than the bytes.
  const bare = (installationId) => post(installationId, { headers })
  const bareBody = (installationId) => post(installationId, { headers: { ...headers, 'content-type': 'application/json' }, body: '{}' })
  const ours = (installationId) => auth({ type: 'installation', installationId })
  const contenders = [['ours', ours], ['bare', bare], ['bareBody', bareBody]]
  // Interleaved, one of each in turn (the order rotating), so that a change of the machine's
  // load falls on all. Also the process's CPU time around each mint (the fake registry's
  // threads included, the same work for all): the differences are what the clients
  // themselves cost, which the machine's load inflates less than it does wall-clock time.
  const perRound = 100
  const roundCount = 15
  const rounds = { ours: [], bare: [], bareBody: [], ratio: [], ratioBody: [] }
  const cpu = { ours: 0, bare: 0, bareBody: 0 }
  for (let round = 0; round < roundCount; round++) {
    const total = { ours: 0n, bare: 0n, bareBody: 0n }
    for (let i = 0; i < perRound; i++) {
      for (let j = 0; j < contenders.length; j++) {
        const [name, mint] = contenders[(i + j) % contenders.length]
        const id = registry.addInstallation(`bench ${round} ${i} ${name}`)
        const cpuStart = process.cpuUsage()
        const start = ns()
        await mint(id)
        total[name] += ns() - start
        const used = process.cpuUsage(cpuStart)
        cpu[name] += used.user + used.system
      }
    }
    for (const name of ['ours', 'bare', 'bareBody']) rounds[name].push(Number(total[name]) / perRound)
    rounds.ratio.push(Number(total.ours) / Number(total.bare))
    rounds.ratioBody.push(Number(total.ours) / Number(total.bareBody))
  }
  const mints = roundCount * perRound
  return {
    ours: median(rounds.ours),
    bare: median(rounds.bare),
    bareBody: median(rounds.bareBody),
    ratio: median(rounds.ratio),
    ratioBody: median(rounds.ratioBody),
    cpuOurs: cpu.ours / mints,
    cpuBare: cpu.bare / mints,
    cpuBareBody: cpu.bareBody / mints,
  }
}

async function concurrent(registry) {
  const results = []
  for (let round = 0; round < 5; round++) {
    const id = registry.addInstallation(`concurrent ${round}`)
    const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
    const start = ns()
    const tokens = await Promise.all(Array.from({ length: 500 }, () => auth({ type: 'installation', installationId: id })))
    const ms = Number(ns() - start) / 1e6
    results.push({ ms, mints: registry.mintCountFor(id), distinct: new Set(tokens.map((t) => t.token)).size })
  }
  return { ms: median(results.map((r) => r.ms)), mints: Math.max(...results.map((r) => r.mints)), distinct: Math.max(...results.map((r) => r.distinct)) }
}

const registry = new FakeRegistry()
try {
  const c = await cached(registry)
  console.log(`cached auth({type:"installation"}): ours ${c.ours.toFixed(0)} ns/call, jsonwebtoken+Map+fetch ${c.theirs.toFixed(0)} ns/call (ours/theirs ${(c.ours / c.theirs).toFixed(2)})`)
  const m = await cold(registry)
  const pct = (r) => `${((r - 1) * 100).toFixed(1)} %`
  console.log(`cold mint: ours ${(m.ours / 1000).toFixed(0)} us, bare fetch POST ${(m.bare / 1000).toFixed(0)} us, with the body {} ${(m.bareBody / 1000).toFixed(0)} us`)
  console.log(`  ours over bare: ${pct(m.ours / m.bare)} (medians), ${pct(m.ratio)} (median of the rounds' ratios); over bare with {}: ${pct(m.ours / m.bareBody)}, ${pct(m.ratioBody)}`)
  console.log(`  CPU per mint (the process, fake registry included): ours ${m.cpuOurs.toFixed(0)} us, bare ${m.cpuBare.toFixed(0)} us, bare with {} ${m.cpuBareBody.toFixed(0)} us`)
  const k = await concurrent(registry)
  console.log(`500 concurrent cold calls: ${k.ms.toFixed(1)} ms, ${k.mints} mint(s), ${k.distinct} distinct token(s)`)
} finally {
  registry.close()
}
