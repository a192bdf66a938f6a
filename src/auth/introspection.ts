// Owns RFC 7662 token introspection: POST the token with HTTP Basic client authentication, read active/exp/iss/aud and the user claim, cache active verdicts.
// Must not log or store a token in clear (cache keys are HMACs); a provider that cannot be asked is IDP_UNAVAILABLE, never a refusal.
import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { OAuthConfig } from '../config/schema.js';
import { ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { httpsRequest, safeUrl } from './https-request.js';
import { userFromClaims, type TokenValidator, type TokenVerdict } from './token.js';

type IntrospectionConfig = NonNullable<OAuthConfig['introspection']>;

export interface IntrospectionOptions {
  logger: Logger;
  userClaim: string;
  timeoutMs: number;
  ca?: string;
  now?: () => number;
}

interface Cached { user: string; until: number; expiresAt?: number }

const MAX_TOKEN_LENGTH = 16 * 1024;

export class IntrospectionValidator implements TokenValidator {
  private readonly cache = new LRUCache<string, Cached>({ max: 50_000 });
  private readonly inflight = new Map<string, Promise<TokenVerdict>>();
  private readonly hmacKey = randomBytes(32);
  private readonly now: () => number;
  private readonly authorization: string;

  constructor(private readonly config: IntrospectionConfig, private readonly opts: IntrospectionOptions) {
    this.now = opts.now ?? Date.now;
    // RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
    const id = encodeURIComponent(config.clientId);
    const secret = encodeURIComponent(config.clientSecret ?? '');
    this.authorization = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  }

  async validate(token: string): Promise<TokenVerdict> {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'malformed' };
    const key = createHmac('sha256', this.hmacKey).update(token).digest('base64');
    const hit = this.cache.get(key);
    if (hit && this.now() < hit.until) return { ok: true, user: hit.user, ...(hit.expiresAt ? { expiresAt: hit.expiresAt } : {}) };
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.ask(token).then((v) => {
      if (v.ok && this.config.cacheMs > 0) {
        const until = Math.min(this.now() + this.config.cacheMs, v.expiresAt ?? Infinity);
        this.cache.set(key, { user: v.user, until, ...(v.expiresAt ? { expiresAt: v.expiresAt } : {}) });
      }
      return v;
    }).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async ask(token: string): Promise<TokenVerdict> {
    const url = this.config.url;
    const res = await httpsRequest(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: this.authorization },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
      timeoutMs: this.opts.timeoutMs,
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
    });
    // RFC 7662 §2.3: a 401/403 means *our* client credentials were refused: a configuration problem, not the user's token.
    if (res.status !== 200) throw new ProxyError('IDP_UNAVAILABLE', `${safeUrl(url)}: HTTP ${res.status}`);
    let claims: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(res.body.toString('utf8'));
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      claims = v as Record<string, unknown>;
    } catch (e) {
      throw new ProxyError('IDP_UNAVAILABLE', `${safeUrl(url)}: invalid answer: ${(e as Error).message}`);
    }
    return this.judge(claims);
  }

  /** RFC 7662 §2.2: only `active: true` counts; exp, iss and aud are checked when present (and configured). */
  private judge(claims: Record<string, unknown>): TokenVerdict {
    if (claims['active'] !== true) return { ok: false, reason: 'inactive' };
    const exp = typeof claims['exp'] === 'number' ? claims['exp'] * 1000 : undefined;
    if (exp !== undefined && exp <= this.now()) return { ok: false, reason: 'expired' };
    if (this.config.issuer !== undefined && claims['iss'] !== this.config.issuer) return { ok: false, reason: 'issuer' };
    if (this.config.audience !== undefined) {
      const wanted = Array.isArray(this.config.audience) ? this.config.audience : [this.config.audience];
      const aud = claims['aud'];
      const got = Array.isArray(aud) ? aud : [aud];
      if (!got.some((a) => typeof a === 'string' && wanted.includes(a))) return { ok: false, reason: 'audience' };
    }
    const user = userFromClaims(claims, this.opts.userClaim);
    if (!user) return { ok: false, reason: 'no_user_claim' };
    return { ok: true, user, ...(exp !== undefined ? { expiresAt: exp } : {}) };
  }
}
