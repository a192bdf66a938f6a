// Owns which users are traced until when in this process (trace on demand): add, stop, list, match, expiry.
// Must not log session data or know sockets; the primary's copy is pushed to workers over IPC (cluster.ts).

/** One active trace: the user as given by the operator (matched case-insensitively) and when it ends (epoch ms). */
export interface TraceEntry { user: string; until: number }

/** Longest trace an operator may ask for: a day (full-detail logs are for a specific question). */
export const MAX_TRACE_MINUTES = 24 * 60;

const key = (user: string) => user.trim().toLowerCase();

export class TraceTable {
  private readonly entries = new Map<string, TraceEntry>();
  constructor(private readonly now: () => number = Date.now) {}

  /** Trace `user` for `minutes` from now (0 stops it); returns the entry, or undefined when stopped. */
  set(user: string, minutes: number): TraceEntry | undefined {
    const k = key(user);
    if (minutes <= 0) { this.entries.delete(k); return undefined; }
    const entry = { user: user.trim(), until: this.now() + Math.min(minutes, MAX_TRACE_MINUTES) * 60_000 };
    this.entries.set(k, entry);
    return entry;
  }

  /** Replace the whole table (a worker applying the primary's list). */
  replace(list: readonly TraceEntry[]): void {
    this.entries.clear();
    for (const e of list) if (e.until > this.now()) this.entries.set(key(e.user), { user: e.user, until: e.until });
  }

  /** The active entries (expired ones are dropped here). */
  list(): TraceEntry[] {
    const now = this.now();
    for (const [k, e] of this.entries) if (e.until <= now) this.entries.delete(k);
    return [...this.entries.values()];
  }

  /** True while any trace is active: sessions record their pre-login dialogue only then. */
  get any(): boolean { return this.entries.size > 0 && this.list().length > 0; }

  /** The active entry for one of the names a session is known by (login name typed, directory login), if any. */
  match(...names: Array<string | undefined>): TraceEntry | undefined {
    if (!this.entries.size) return undefined;
    const now = this.now();
    for (const n of names) {
      if (!n) continue;
      const e = this.entries.get(key(n));
      if (e && e.until > now) return e;
    }
    return undefined;
  }

  /** Still active (the same user's trace may have been stopped or renewed since a session matched it). */
  active(user: string): boolean {
    const e = this.entries.get(key(user));
    return !!e && e.until > this.now();
  }
}

/** Validate an operator's request body `{"user": …, "minutes": N}`; returns the problem as text when invalid. */
export function parseTraceRequest(body: unknown): { user: string; minutes: number } | string {
  if (!body || typeof body !== 'object') return 'body must be a JSON object {"user": "...", "minutes": N}';
  const { user, minutes } = body as { user?: unknown; minutes?: unknown };
  if (typeof user !== 'string' || !user.trim() || user.length > 256 || /[\x00-\x1f\x7f]/.test(user)) return '"user" must be a non-empty login name (at most 256 characters)';
  const m = minutes === undefined ? 10 : minutes;
  if (typeof m !== 'number' || !Number.isFinite(m) || m < 0 || m > MAX_TRACE_MINUTES) return `"minutes" must be a number from 0 (stop) to ${MAX_TRACE_MINUTES}`;
  return { user: user.trim(), minutes: m };
}
