// Owns the tier-wide sweep of pool conflicts: a user with live sessions on two members of one pool in the tier's registry (after a Redis outage, a split view, a race) loses those on the member the choice does not keep.
// Must not talk to Redis (the registry source does) nor decide rules (pool-route.ts); one lease holder walks the registry in bounded steps.
import type { Logger } from '../log.js';
import { poolMovesTotal, poolSessionsClosedTotal } from '../metrics.js';
import { choosePoolMember, normaliseUser, type MemberState, type PoolSpec } from '../directory/pool-route.js';

/** One session as the tier registry shows it. */
export interface RegistrySession {
  user: string;
  backend: string;
}

export interface PoolConflict {
  pool: string;
  user: string;
  /** The member the user stays on (the choice's holder). */
  keep: string;
  /** Members whose sessions of this user are closed, and how many the registry shows there. */
  close: Array<{ member: string; sessions: number }>;
}

/**
 * Conflicts in what the registry shows (pure): per user and pool, live sessions on two or more members. The member kept is
 * the one choosePoolMember keeps (the user's current choice when it holds sessions, else the best-ranked holder); sessions
 * on a member that is down are left to the health kicks, and single-member users to each instance's own move sweep.
 */
export function findConflicts(users: ReadonlyArray<readonly RegistrySession[]>, pools: readonly PoolSpec[], statesOf: (pool: string) => ReadonlyMap<string, MemberState>, now: number): PoolConflict[] {
  const out: PoolConflict[] = [];
  const byUser = new Map<string, RegistrySession[]>();
  for (const list of users) {
    for (const s of list) {
      const key = normaliseUser(s.user);
      const l = byUser.get(key) ?? [];
      l.push(s);
      byUser.set(key, l);
    }
  }
  for (const sessions of byUser.values()) {
    for (const pool of pools) {
      const members = new Set(pool.members.map((m) => m.name));
      const count = new Map<string, number>();
      for (const s of sessions) if (members.has(s.backend)) count.set(s.backend, (count.get(s.backend) ?? 0) + 1);
      if (count.size < 2) continue;
      const user = sessions[0]!.user;
      const d = choosePoolMember({ user, pool, states: statesOf(pool.name), live: [...count.keys()], now });
      const close = d.kick.filter((k) => k.reason === 'conflict').map((k) => ({ member: k.member, sessions: count.get(k.member) ?? 0 }));
      if (close.length === 0) continue;
      const gone = new Set(d.kick.map((k) => k.member));
      const keep = [...count.keys()].find((m) => !gone.has(m)) ?? '';
      out.push({ pool: pool.name, user, keep, close });
    }
  }
  return out;
}

export interface ConflictSweepOptions {
  registry: {
    scanUsers(cursor: string, count: number): Promise<{ cursor: string; users: RegistrySession[][] } | undefined>;
    lease(key: string, ms: number): Promise<boolean>;
  };
  leaseKey: string;
  pools(): PoolSpec[];
  statesOf(pool: string): ReadonlyMap<string, MemberState>;
  /** Close a user's sessions on a member in the whole tier (this instance at once, the others through the broadcast). */
  close(user: string, member: string): Promise<void>;
  intervalMs: number;
  /** SCAN COUNT per round: bounds the keys (and their session sets) one round reads. */
  keysPerRound: number;
  now?: () => number;
  logger?: Logger;
}

/**
 * Every `intervalMs` the instance holding the lease (taken with SET NX, kept while it renews it each round, lost 3 rounds
 * after it stops) reads one SCAN step of the registry and closes the conflicts in it; a full walk takes
 * (user keys / keysPerRound) rounds. A conflict closed once is not closed again for two rounds (its sessions take a moment to go).
 */
export class PoolConflictSweep {
  private cursor = '0';
  private readonly closed = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly now: () => number;

  constructor(private readonly opts: ConflictSweepOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** One round: the conflicts acted on (empty when another instance holds the lease or Redis did not answer). */
  async sweepOnce(): Promise<PoolConflict[]> {
    const pools = this.opts.pools();
    if (pools.length === 0) return [];
    if (!(await this.opts.registry.lease(this.opts.leaseKey, this.opts.intervalMs * 3))) return [];
    const step = await this.opts.registry.scanUsers(this.cursor, this.opts.keysPerRound);
    if (!step) return [];
    this.cursor = step.cursor;
    const now = this.now();
    for (const [k, at] of this.closed) if (now - at > 2 * this.opts.intervalMs) this.closed.delete(k);
    const acted: PoolConflict[] = [];
    for (const c of findConflicts(step.users, pools, (p) => this.opts.statesOf(p), now)) {
      const fresh = c.close.filter((x) => !this.closed.has(`${c.pool}\0${normaliseUser(c.user)}\0${x.member}`));
      if (fresh.length === 0) continue;
      for (const x of fresh) {
        this.closed.set(`${c.pool}\0${normaliseUser(c.user)}\0${x.member}`, now);
        poolMovesTotal.inc({ pool: c.pool, reason: 'conflict' });
        poolSessionsClosedTotal.inc({ pool: c.pool, member: x.member, reason: 'conflict' }, x.sessions);
        this.opts.logger?.warn({ event: 'pool_conflict', pool: c.pool, user: c.user, keep: c.keep, from: x.member, sessions: x.sessions },
          `${c.user} has live sessions on ${c.keep} and ${x.member} (tier registry): closing ${x.sessions} on ${x.member}`);
        await this.opts.close(c.user, x.member);
      }
      acted.push({ ...c, close: fresh });
    }
    return acted;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = true;
      this.sweepOnce().catch((e: unknown) => {
        this.opts.logger?.error({ event: 'pool_conflict_sweep_failed', err: e instanceof Error ? e.message : String(e) }, 'pool conflict sweep failed');
      }).finally(() => { this.running = false; });
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
