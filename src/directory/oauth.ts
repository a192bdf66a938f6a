// Owns bearer-token logins in front of any Directory: the token validator names the user, the directory finds the account (no password).
// Must not verify passwords (they pass to the inner directory) nor log tokens; provider trouble is IDP_UNAVAILABLE, never a refusal.
import type { TokenValidator } from '../auth/token-validator.js';
import type { Logger } from '../log.js';
import { isTokenCredentials, type Credentials } from '../proxy/sasl.js';
import type { Account, AuthResult, Directory } from './directory.js';

export class OAuthDirectory implements Directory {
  constructor(private readonly inner: Directory, private readonly validator: TokenValidator, private readonly logger: Logger) {}

  async authenticate(credentials: Credentials): Promise<AuthResult> {
    if (!isTokenCredentials(credentials)) return this.inner.authenticate(credentials);
    const verdict = await this.validator.validate(credentials.token);
    if (!verdict.ok) {
      this.logger.info({ phase: 'oauth', mechanism: credentials.mechanism, claimed: credentials.user.slice(0, 256), refusal: verdict.reason }, 'bearer token refused');
      return { ok: false };
    }
    const account = await this.inner.lookup(verdict.user);
    if (!account) {
      this.logger.info({ phase: 'oauth', mechanism: credentials.mechanism, tokenUser: verdict.user, refusal: 'unknown_user' }, 'bearer token names no account');
      return { ok: false };
    }
    // RFC 7628 §3.1 authzid / XOAUTH2 user: the client may name who it logs in as; it must be the token's own account.
    if (credentials.user && credentials.user !== verdict.user && !(await this.sameAccount(credentials.user, account))) {
      this.logger.info({ phase: 'oauth', mechanism: credentials.mechanism, tokenUser: verdict.user, claimed: credentials.user.slice(0, 256), refusal: 'user_mismatch' }, 'bearer token is for another user');
      return { ok: false };
    }
    return { ok: true, account };
  }

  lookup(name: string): Promise<Account | null> { return this.inner.lookup(name); }
  lookupRecipient(address: string): Promise<Account | null> { return this.inner.lookupRecipient(address); }
  close(): Promise<void> { return this.inner.close(); }
  invalidate(user: string): number { return this.inner.invalidate?.(user) ?? 0; }
  async reload(): Promise<void> { await this.inner.reload?.(); }

  private async sameAccount(name: string, account: Account): Promise<boolean> {
    const other = await this.inner.lookup(name);
    return other !== null && other.login === account.login && other.host === account.host;
  }
}
