// Owns choosing and building the configured OAuth 2.0 bearer-token validator (JWT/JWKS or RFC 7662 introspection).
// Must not look users up in the directory or know any mail protocol; it never logs or keeps a token in clear.
import type { OAuthConfig } from '../config/schema.js';
import { ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { IntrospectionValidator } from './introspection.js';
import { JwtValidator } from './jwt.js';
import type { TokenValidator } from './token.js';

export type { TokenRefusal, TokenValidator, TokenVerdict } from './token.js';

export interface ValidatorOptions {
  logger: Logger;
  /** Milliseconds clock (tests pass a fake one). */
  now?: () => number;
}

export function createTokenValidator(config: OAuthConfig, opts: ValidatorOptions): TokenValidator {
  if (config.jwt) return new JwtValidator(config.jwt, { ...opts, userClaim: config.userClaim, timeoutMs: config.timeoutMs, ...(config.tlsCa ? { ca: config.tlsCa } : {}) });
  if (config.introspection) return new IntrospectionValidator(config.introspection, { ...opts, userClaim: config.userClaim, timeoutMs: config.timeoutMs, ...(config.tlsCa ? { ca: config.tlsCa } : {}) });
  throw new ProxyError('CONFIG_INVALID', 'oauth needs jwt or introspection');
}
