// Owns the contract of an OAuth 2.0 bearer-token validator (verdicts, refusal reasons) and the user-claim rule.
// Must not choose or build a validator (token-validator.ts does), look users up, or keep a token in clear.
export type TokenRefusal = 'malformed' | 'signature' | 'expired' | 'not_yet_valid' | 'issuer' | 'audience' | 'inactive' | 'no_user_claim' | 'unknown_key' | 'algorithm' | 'type';

export type TokenVerdict =
  | { ok: true; user: string; /** ms since epoch, when the token says */ expiresAt?: number }
  | { ok: false; reason: TokenRefusal };

export interface TokenValidator {
  /** Resolves with a verdict; throws ProxyError IDP_UNAVAILABLE when the provider cannot be asked (JWKS or introspection). */
  validate(token: string): Promise<TokenVerdict>;
}

/** The user claim's value when it is a usable name (a non-empty string without control characters). */
export function userFromClaims(claims: Record<string, unknown>, claim: string): string | null {
  const v = claims[claim];
  return typeof v === 'string' && v.length > 0 && v.length <= 256 && !/[\x00-\x1f\x7f]/.test(v) ? v : null;
}
