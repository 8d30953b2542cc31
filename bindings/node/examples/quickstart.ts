// A TypeScript example, type-checked with `tsc --strict --noEmit` (run-tests.sh).
import { createAppAuth, IcrError, type InstallationAccessTokenAuthentication } from 'icr-app'
import { FakeRegistry } from 'icr-app/testing'
import { createPrivateKey, sign } from 'node:crypto'

async function main(): Promise<void> {
  const registry = new FakeRegistry()
  try {
    const auth = createAppAuth({ appId: registry.appId, privateKey: registry.privateKey, baseUrl: registry.url })
    const jwt = await auth({ type: 'app' })
    console.log('JWT expires at', jwt.expiresAt)
    const token: InstallationAccessTokenAuthentication = await auth({
      type: 'installation',
      installationId: registry.installationIds[0],
      minLife: 600,
    })
    console.log('token for', token.installationId, 'until', token.expiresAt)
    const response = await auth.fetch({ installationId: token.installationId }, `/organizations/${registry.organizationIds[0]}`)
    const organization = (await response.json()) as { fullName: string }
    console.log(organization.fullName)
    for await (const installation of auth.installations()) console.log(installation.id)
    console.log(auth.stats().mints, 'mints')

    // A key held elsewhere (here node:crypto stands in for a KMS).
    const key = createPrivateKey(registry.privateKey)
    const kms = createAppAuth({
      appId: registry.appId,
      baseUrl: registry.url,
      signer: async (message: Uint8Array) => sign('sha256', message, key),
    })
    const viaKms = await kms({ type: 'installation', organizationId: registry.organizationIds[1] })
    console.log(viaKms.tokenType, await kms.revokeAll(), 'revoked')
  } catch (error) {
    if (error instanceof IcrError) console.error(error.code, error.status, error.message)
    throw error
  } finally {
    registry.close()
  }
}

void main()
