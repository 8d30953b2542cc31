// The ESM entry of icr-app: the same objects as the CommonJS one (index.js).
import cjs from './index.js'

export const {
  createAppAuth,
  verifyWebhook,
  WebhookError,
  IcrError,
  InvalidKeyError,
  ConfigError,
  AuthError,
  NotFoundError,
  RateLimitedError,
  ServerError,
  TransportError,
  SigningError,
} = cjs
export default cjs
