// The registry's answer to a mint, canned for the benchmarks that run without a registry
// (`cpu.mjs`, and the synchronous parts of `phases.mjs` and `wake.mjs`).

/** The body of a mint's answer for `installationId` of `appId`, issued now, as JSON text. */
export function tokenText(appId, installationId) {
  const now = Date.now()
  return JSON.stringify({
    id: 'x', createdAt: new Date(now).toISOString(), updatedAt: new Date(now).toISOString(),
    token: `crs_${'0'.repeat(48)}`, expiresAt: new Date(now + 7200e3).toISOString(), isActive: true,
    permissions: { organization_info: 'VIEW' }, appId, installationId, organizationId: 'o',
  })
}

/** Its headers, flat as `handleResponse` takes them. */
export const answerHeaders = ['content-type', 'application/json', 'date', new Date().toUTCString()]
