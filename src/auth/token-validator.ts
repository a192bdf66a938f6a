// Owns the contract for validating an OAuth 2.0 bearer token into a user name, and choosing the configured validator.
// Must not look users up in the directory or know any mail protocol; it never logs or keeps a token in clear.
import type { OAuthConfig } from '../config/schema.js';
import { ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { IntrospectionValidator } from './introspection.js';
import { JwtValidator } from './jwt.js';

/** Why a token was refused (logs and metrics; clients only ever see the RFC 7628 "invalid_token"). */
export type TokenRefusal = 'malformed' | 'signature' | 'expired' | 'not_yet_valid' | 'issuer' | 'audience' | 'inactive' | 'no_user_claim' | 'unknown_key' | 'algorithm';

export type TokenVerdict =
  | { ok: true; user: string; /** ms since epoch, when the token says */ expiresAt?: number }
  | { ok: false; reason: TokenRefusal };

export interface TokenValidator {
  /** Resolves with a verdict; throws ProxyError IDP_UNAVAILABLE when the provider cannot be asked (JWKS or introspection). */
  validate(token: string): Promise<TokenVerdict>;
}

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

/** The user claim's value when it is a usable name (a non-empty string without control characters). */
export function userFromClaims(claims: Record<string, unknown>, claim: string): string | null {
  const v = claims[claim];
  return typeof v === 'string' && v.length > 0 && v.length <= 256 && !/[\x00-\x1f\x7f]/.test(v) ? v : null;
}
