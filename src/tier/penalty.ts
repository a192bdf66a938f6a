// Owns the tier-wide failed-login penalty: failure counters per client address and per login name in Redis, the local
// AuthPenalty as fallback, and pushing failures counted while Redis was away. Must not sleep or know protocols.
import { AuthPenalty, PENALTY_WINDOW_MS, penaltyDelayMs } from '../proxy/auth-penalty.js';
import { BACKGROUND_TIMEOUT_MS, type TierClient } from './client.js';
import type { TierKeys } from './keys.js';

/** Failures remembered for the resync at most (a long outage under a spray must not grow memory without bound). */
const MAX_PENDING = 100_000;
/** Deadline of the resync batch (not on any login's path). */
const BULK_TIMEOUT_MS = 2000;

export class TierPenalty {
  /** Redis key → failures counted locally while the tier was down, added to Redis when it is back. */
  private readonly pending = new Map<string, number>();

  constructor(
    private readonly client: TierClient,
    private readonly keys: TierKeys,
    private readonly local: AuthPenalty = new AuthPenalty(),
    private readonly windowMs = PENALTY_WINDOW_MS,
  ) {
    client.onUp(() => void this.resync());
  }

  /**
   * Record a failed login of `user` from `address`; the delay before answering follows the same curve as one proxy's
   * (AuthPenalty) over the larger of the address's and the name's failure counts across the tier. A correct password
   * is never delayed or refused by this, so a guesser elsewhere cannot lock the owner out.
   */
  async failure(address: string, user: string, baseMs: number, maxMs: number): Promise<number> {
    const ka = this.keys.addressFailures(address);
    // No name (a bearer token that names nobody): the address alone counts, not one counter shared by every such client.
    const ku = user.trim() ? this.keys.userFailures(user) : ka;
    this.local.failure(ka, 0, 0);
    if (ku !== ka) this.local.failure(ku, 0, 0);
    const localCount = Math.max(this.local.count(ka), this.local.count(ku));
    const counts = await this.client.run('penalty', async (r) => {
      const p = r.pipeline().incr(ka).pexpire(ka, this.windowMs);
      if (ku !== ka) p.incr(ku).pexpire(ku, this.windowMs);
      const res = await p.exec();
      const a = res?.[0];
      const u = ku !== ka ? res?.[2] : a;
      if (!a || !u || a[0] || u[0]) throw a?.[0] ?? u?.[0] ?? new Error('empty pipeline reply');
      return [Number(a[1]), Number(u[1])] as const;
    });
    if (!counts) { this.remember(ka); if (ku !== ka) this.remember(ku); }
    // While Redis answers its counts are the truth (a success elsewhere cleared them); local ones only stand in.
    return penaltyDelayMs(counts ? Math.max(counts[0], counts[1]) : localCount, baseMs, maxMs);
  }

  /** A successful login clears the address's and the name's counts (not awaited by the login). */
  success(address: string, user: string): void {
    const keys = this.clearLocal(address, user);
    void this.client.run('penalty', (r) => r.del(...keys), { timeoutMs: BACKGROUND_TIMEOUT_MS });
  }

  /**
   * Clear the local counts and return the Redis keys to delete, for a caller that folds the DEL into a call it makes
   * anyway (the session admit), saving a round trip per login.
   */
  clearLocal(address: string, user: string): string[] {
    const ka = this.keys.addressFailures(address);
    const ku = this.keys.userFailures(user);
    this.local.success(ka);
    this.local.success(ku);
    this.pending.delete(ka);
    this.pending.delete(ku);
    return [ka, ku];
  }

  /** Failures counted now (tier-wide when reachable) for an address and a name. */
  async count(address: string, user: string): Promise<number> {
    const ka = this.keys.addressFailures(address);
    const ku = this.keys.userFailures(user);
    const remote = await this.client.run('penalty', (r) => r.mget(ka, ku), { timeoutMs: BACKGROUND_TIMEOUT_MS, evenIfDown: true });
    if (remote) return Math.max(...remote.map((v) => Number(v ?? 0)));
    return Math.max(this.local.count(ka), this.local.count(ku));
  }

  private remember(key: string): void {
    if (this.pending.size >= MAX_PENDING && !this.pending.has(key)) return;
    this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
  }

  /** Redis is back: add what was counted here meanwhile, so the tier's view of a guesser is complete again. */
  private async resync(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending.clear();
    const ok = await this.client.run('penalty_resync', async (r) => {
      const p = r.pipeline();
      for (const [k, n] of batch) p.incrby(k, n).pexpire(k, this.windowMs);
      await p.exec();
      return true;
    }, { timeoutMs: BULK_TIMEOUT_MS });
    if (!ok) for (const [k, n] of batch) this.pending.set(k, (this.pending.get(k) ?? 0) + n);
  }
}
