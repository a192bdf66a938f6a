// Owns the per-client-address failed-login penalty: each failure from an address doubles the delay before its answer, up to a cap.
// Must not sleep or know protocols; sessions ask it for a delay and schedule their own timer. Bounded memory (LRU).
import { LRUCache } from 'lru-cache';

/** A failure is forgotten this long after the last one from the same address. */
export const PENALTY_WINDOW_MS = 10 * 60_000;

interface Entry { failures: number; lastAt: number }

/** The delay curve after `failures` failures: baseMs, 2×, 4×, … capped at maxMs (the tier uses the same one). */
export function penaltyDelayMs(failures: number, baseMs: number, maxMs: number): number {
  if (baseMs <= 0 || failures <= 0) return 0;
  const cap = Math.max(baseMs, maxMs);
  return Math.min(cap, baseMs * 2 ** Math.min(failures - 1, 30));
}

export class AuthPenalty {
  private readonly entries: LRUCache<string, Entry>;

  constructor(private readonly now: () => number = Date.now, maxAddresses = 100_000) {
    this.entries = new LRUCache<string, Entry>({ max: maxAddresses });
  }

  /**
   * Record a failed login from `address` and return how long to wait before answering:
   * baseMs, 2×, 4×, … capped at maxMs (maxMs ≤ baseMs gives a fixed delay). Like Dovecot's auth_penalty.
   */
  failure(address: string, baseMs: number, maxMs: number): number {
    const t = this.now();
    const prev = this.entries.get(address);
    const failures = prev && t - prev.lastAt < PENALTY_WINDOW_MS ? prev.failures + 1 : 1;
    this.entries.set(address, { failures, lastAt: t });
    return penaltyDelayMs(failures, baseMs, maxMs);
  }

  /** A successful login from `address` clears its penalty. */
  success(address: string): void { this.entries.delete(address); }

  /** Failures counted now for `address` (for tests and diagnostics). */
  count(address: string): number {
    const e = this.entries.get(address);
    return e && this.now() - e.lastAt < PENALTY_WINDOW_MS ? e.failures : 0;
  }
}
