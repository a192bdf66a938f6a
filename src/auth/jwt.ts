// Owns local validation of JWT access tokens (RFC 9068 style): signature against a JWKS (file or HTTPS URL, cached), iss, aud, exp/nbf, user claim.
// Must not log tokens or claims beyond the user; an unreachable JWKS with nothing cached is IDP_UNAVAILABLE, never a refusal.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { OAuthConfig } from '../config/schema.js';
import { ProxyError, isProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { httpsRequest, safeUrl } from './https-request.js';
import { userFromClaims, type TokenRefusal, type TokenValidator, type TokenVerdict } from './token.js';

type JwtConfig = NonNullable<OAuthConfig['jwt']>;

export interface JwtValidatorOptions {
  logger: Logger;
  userClaim: string;
  timeoutMs: number;
  ca?: string;
  now?: () => number;
}

interface KeySet { keys: JWTVerifyGetKey; fetchedAt: number }

/** jose error codes (its documented `code` property) → our refusal reasons. */
const REFUSALS: Record<string, TokenRefusal> = {
  ERR_JWT_EXPIRED: 'expired',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'signature',
  ERR_JWKS_NO_MATCHING_KEY: 'unknown_key',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'unknown_key',
  ERR_JOSE_ALG_NOT_ALLOWED: 'algorithm',
  ERR_JOSE_NOT_SUPPORTED: 'algorithm',
  ERR_JWS_INVALID: 'malformed',
  ERR_JWT_INVALID: 'malformed',
};

export class JwtValidator implements TokenValidator {
  private current: KeySet | undefined;
  private loading: Promise<KeySet> | undefined;
  private lastFetch = -Infinity;
  private readonly now: () => number;

  constructor(private readonly config: JwtConfig, private readonly opts: JwtValidatorOptions) {
    this.now = opts.now ?? Date.now;
    // A JWKS file that cannot be read or parsed is a configuration error at load, not a surprise at the first login.
    if (config.jwksFile) this.current = { keys: createLocalJWKSet(this.readFile()), fetchedAt: this.now() };
  }

  async validate(token: string): Promise<TokenVerdict> {
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return { ok: false, reason: 'malformed' };
    let keys = await this.keySet();
    let verdict = await this.verify(token, keys);
    // A key id we do not know yet: the provider may have rotated keys. Refetch, at most every jwksRefetchMinMs.
    if (!verdict.ok && verdict.reason === 'unknown_key' && this.now() - this.lastFetch >= this.config.jwksRefetchMinMs) {
      keys = await this.keySet(true);
      verdict = await this.verify(token, keys);
    }
    return verdict;
  }

  private async verify(token: string, keys: KeySet): Promise<TokenVerdict> {
    try {
      const { payload } = await jwtVerify(token, keys.keys, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: this.config.algorithms,
        clockTolerance: this.config.clockToleranceSec,
        currentDate: new Date(this.now()),
        requiredClaims: ['exp'],
        ...(this.config.type ? { typ: this.config.type } : {}),
      });
      const user = userFromClaims(payload, this.opts.userClaim);
      if (!user) return { ok: false, reason: 'no_user_claim' };
      return { ok: true, user, ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {}) };
    } catch (e) {
      return { ok: false, reason: refusalOf(e) };
    }
  }

  /** The cached key set, refreshed after jwksCacheMs (or when forced); a failed refresh keeps serving the old set. */
  private async keySet(force = false): Promise<KeySet> {
    const cur = this.current;
    if (cur && !force && this.now() - cur.fetchedAt < this.config.jwksCacheMs) return cur;
    this.loading ??= this.load().finally(() => { this.loading = undefined; });
    try {
      return await this.loading;
    } catch (e) {
      if (cur) {
        this.opts.logger.warn({ phase: 'oauth', err: isProxyError(e) ? e.detail : String(e) }, 'JWKS refresh failed; using the keys fetched before');
        return cur;
      }
      throw e;
    }
  }

  private async load(): Promise<KeySet> {
    this.lastFetch = this.now();
    const jwks = this.config.jwksFile ? this.readFile() : await this.fetch(this.config.jwksUrl!);
    const set = { keys: createLocalJWKSet(jwks), fetchedAt: this.now() };
    this.current = set;
    return set;
  }

  private readFile(): JSONWebKeySet {
    const file = this.config.jwksFile!;
    try {
      return parseJwks(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ProxyError('CONFIG_INVALID', `oauth.jwt.jwksFile ${file}: ${(e as Error).message}`);
    }
  }

  private async fetch(url: string): Promise<JSONWebKeySet> {
    const res = await httpsRequest(url, { method: 'GET', headers: { accept: 'application/json' }, timeoutMs: this.opts.timeoutMs, ...(this.opts.ca ? { ca: this.opts.ca } : {}) });
    if (res.status !== 200) throw new ProxyError('IDP_UNAVAILABLE', `${safeUrl(url)}: HTTP ${res.status}`);
    try {
      return parseJwks(res.body.toString('utf8'));
    } catch (e) {
      throw new ProxyError('IDP_UNAVAILABLE', `${safeUrl(url)}: ${(e as Error).message}`);
    }
  }
}

function parseJwks(text: string): JSONWebKeySet {
  const v: unknown = JSON.parse(text);
  if (!v || typeof v !== 'object' || !Array.isArray((v as { keys?: unknown }).keys)) throw new ProxyError('CONFIG_INVALID', 'not a JWKS document (no "keys" array)');
  return v as JSONWebKeySet;
}

function refusalOf(e: unknown): TokenRefusal {
  const code = (e as { code?: unknown }).code;
  if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
    const claim = (e as { claim?: unknown }).claim;
    if (claim === 'iss') return 'issuer';
    if (claim === 'aud') return 'audience';
    if (claim === 'nbf' || claim === 'iat') return 'not_yet_valid';
    if (claim === 'typ') return 'type';
    return 'malformed';
  }
  return (typeof code === 'string' && REFUSALS[code]) || 'malformed';
}
