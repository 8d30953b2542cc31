// The ESM entry of icr-app/testing (testing.js).
import cjs from './testing.js'

export const { FakeRegistry, TlsFront, ConnectProxy } = cjs
export default cjs
