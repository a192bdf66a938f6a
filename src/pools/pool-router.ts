// Owns pool affinity at run time: member conditions from health, live sessions (this process, or the tier registry), the login-time
// choice, moves (closing sessions with the protocol's goodbye when a move is due), the `where` explanation and pool metrics.
// Must not hash or decide rules itself (pool-route.ts, pure) nor open backend connections; it never waits on Redis past the tier's deadline.
import { ProxyError } from '../errors.js';
import type { Config } from '../config/schema.js';
import { routeForBackend, type Route, type RouteProtocol } from '../directory/backends.js';
import type { EffectiveState } from '../health/backend-state.js';
import type { Logger } from '../log.js';
import type { LiveSession, SessionRegistry } from '../proxy/sessions.js';
import { choosePoolMember, drainFraction, memberCondition, normaliseUser, poolSpec, type MemberCondition, type TierMemberView, type MemberState, type MoveReason, type PoolDecision, type PoolSpec } from '../directory/pool-route.js';
import { poolMovesTotal, poolRoutesTotal, poolSessionsClosedTotal, poolUsersLive } from '../metrics.js';

/** Live sessions of a user in the whole tier (the tier's session registry); `local` when Redis did not answer in time. */
export interface TierSessionSource {
  /** `loginPath`: a login waits for the answer (the login deadline applies, a tier marked down is not asked). */
  list(user: string, opts?: { loginPath?: boolean }): Promise<{ source: 'tier' | 'local'; sessions: ReadonlyArray<{ backend: string; instance?: string }> }>;
}

export interface PoolRouterOptions {
  config: () => Pick<Config, 'pools'>;
  sessions: Pick<SessionRegistry, 'list'> & Partial<Pick<SessionRegistry, 'onRemove'>>;
  /** The tier registry; without it live sessions are this process's only (README: the risk without `tier:`). */
  tier?: TierSessionSource;
  now?: () => number;
  logger?: Logger;
  /** How often due moves are carried out for this process's sessions. */
  sweepIntervalMs?: number;
  /**
   * A login that would land on another member than the one where this user's last session ended less than this long ago is
   * held back for the rest of it: the old member logs the end (and finishes its work) after the client already saw the goodbye.
   */
  switchGraceMs?: number;
  sleep?(ms: number): Promise<void>;
}

export interface PoolChoice {
  pool: string;
  member: string;
  decision: Extract<PoolDecision, { kind: 'route' }>;
}

/** What `mailproxy where USER` and `GET /routes/USER` show. */
export interface WhereReport {
  user: string;
  pool: string;
  /** Member a new session goes to now; null when logins wait (move in progress) or no member may serve. */
  member: string | null;
  reason: string;
  target: string | null;
  pendingMove?: { to: string; at: string; reason: MoveReason };
  /** Every member in hash order with its weight, condition and since. */
  order: Array<{ member: string; weight: number; condition: MemberCondition; since: string }>;
  /** Whose view the conditions come from: the tier's shared quorum view, or this instance's own health (no tier, or Redis away). */
  conditions: 'tier' | 'local';
  /** Where the user's live sessions are (members), and whose view that is. */
  live: { source: 'process' | 'tier' | 'local-fallback'; members: string[]; sessions: number };
  /** This user's fixed point in a drain window (0..1). */
  drainFraction: number;
}

/** Sessions logging in count as live (they will be); only relayed ones are closed (a login in flight becomes relayed, then goes). */
const CLOSING_SESSION_PHASES: ReadonlyArray<LiveSession['info']['phase']> = ['login', 'relay'];
const REKICK_AFTER_MS = 2000;
const SWITCH_GRACE_MS = 300;

/** Health's folded backend state → what a pool member may do. */
export function conditionOf(state: EffectiveState): MemberCondition {
  if (state === 'down') return 'down';
  if (state === 'maintenance') return 'maintenance';
  return 'up';
}

export class PoolRouter {
  private readonly states = new Map<string, MemberState>();
  /** This instance's own folded health per backend. */
  private readonly local = new Map<string, MemberCondition>();
  private tierView: TierMemberView | undefined;
  private readonly kicked = new Map<string, number>();
  /** pool NUL user → the member where this process last saw one of the user's sessions end, and when. */
  private readonly lastEnded = new Map<string, { member: string; at: number }>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt: number;
  /** pool NUL member → when a reload's config made it a member here (−∞ for the members configured at start). */
  private readonly joined = new Map<string, number>();
  private joinedFrom: Config['pools'] | undefined;

  constructor(private readonly opts: PoolRouterOptions) {
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    // Members configured at start carry no join time of their own: health's first snapshot decides, as before.
    this.syncMembership(-Infinity);
    opts.sessions.onRemove?.((info) => {
      if (info.pool && info.user && info.backend && CLOSING_SESSION_PHASES.includes(info.phase)) {
        this.lastEnded.set(`${info.pool}\0${normaliseUser(info.user)}`, { member: info.backend, at: this.now() });
      }
    });
  }

  /** A backend's folded local health state (initial snapshot and every change). `since` moves only when the member's condition changes. */
  observe(backend: string, state: EffectiveState, at: number = this.now()): void {
    this.local.set(backend, conditionOf(state));
    this.settle(backend, at);
  }

  /**
   * The tier's shared backend view after each refresh (config `tier:`; a cluster worker gets its primary's). While it is
   * available it decides every member's condition, so all instances agree on which members take logins; undefined or
   * unavailable (Redis away): each instance's own health again.
   */
  observeTier(view: TierMemberView | undefined, at: number = this.now()): void {
    this.tierView = view;
    for (const backend of new Set([...this.local.keys(), ...this.states.keys()])) this.settle(backend, at);
  }

  /** Whose view decided the conditions last: the tier's, or this instance's own health. */
  get conditionSource(): 'tier' | 'local' { return this.tierView?.available ? 'tier' : 'local'; }

  private settle(backend: string, at: number): void {
    const condition = memberCondition(backend, this.local.get(backend) ?? 'up', this.tierView);
    const prev = this.states.get(backend);
    if (prev && prev.condition === condition) return;
    this.states.set(backend, { condition, since: prev ? at : Math.min(at, this.startedAt) });
    if (!prev || !this.isMember(backend)) return;
    this.opts.logger?.info({ event: 'pool_member_condition', member: backend, from: prev.condition, to: condition, source: this.conditionSource }, `pool member ${backend} ${prev.condition} -> ${condition} (${this.conditionSource} view)`);
  }

  private isMember(backend: string): boolean {
    return Object.values(this.opts.config().pools).some((p) => p.members.some((m) => (typeof m === 'string' ? m : m.backend) === backend));
  }

  isPool(name: string | null | undefined): boolean {
    return !!name && Object.prototype.hasOwnProperty.call(this.opts.config().pools, name);
  }

  /** Pool a user's host value names (routing.defaultBackend applies to accounts without one). */
  spec(name: string): PoolSpec {
    const s = poolSpec(this.opts.config(), name);
    if (!s) throw new ProxyError('NO_ROUTE', `'${name}' is not a pool`);
    return s;
  }

  /**
   * The member for a new session of `user` (the account's login) in `pool`. Closes sessions the decision says must go (this process's),
   * throws POOL_MOVING while a due move's sessions are closing and BACKEND_DOWN when no member may serve.
   */
  async route(pool: string, user: string): Promise<PoolChoice> {
    let decision = await this.decide(pool, user);
    const last = this.lastEnded.get(`${pool}\0${normaliseUser(user)}`);
    const left = last ? (this.opts.switchGraceMs ?? SWITCH_GRACE_MS) - (this.now() - last.at) : 0;
    if (decision.kind === 'route' && last && last.member !== decision.member && left > 0) {
      await (this.opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))))(left);
      decision = await this.decide(pool, user);
    }
    if (decision.kind === 'wait') {
      poolRoutesTotal.inc({ pool, member: decision.holder, reason: 'moving' });
      throw new ProxyError('POOL_MOVING', `${pool}: moving from ${decision.holder} to ${decision.target}`);
    }
    if (decision.kind === 'none') {
      poolRoutesTotal.inc({ pool, member: '', reason: 'none' });
      throw new ProxyError('BACKEND_DOWN', `${pool}: no member may take logins`);
    }
    poolRoutesTotal.inc({ pool, member: decision.member, reason: decision.reason });
    return { pool, member: decision.member, decision };
  }

  /**
   * The route for an account whose host value (or routing.defaultBackend) names a pool: the chosen member's endpoint for `protocol`.
   * Undefined when the name is not a pool (the caller routes as usual). The health gate is not asked again: the choice already
   * skipped members that are down, and a draining member must still take its users' sessions until their drain moment.
   */
  async resolve(config: Pick<Config, 'backends' | 'routing'>, host: string | null, user: string, protocol: RouteProtocol): Promise<{ route: Route; pool: string; reason: string } | undefined> {
    const name = host?.trim() || config.routing.defaultBackend;
    if (!name || !this.isPool(name)) return undefined;
    const c = await this.route(name, user);
    return { route: routeForBackend(config, c.member, protocol), pool: name, reason: c.decision.reason };
  }

  private async decide(pool: string, user: string): Promise<PoolDecision> {
    const spec = this.spec(pool);
    const live = await this.liveMembers(pool, user, true);
    const decision = choosePoolMember({ user, pool: spec, states: this.statesFor(spec), live: live.members, now: this.now() });
    this.applyKicks(pool, user, decision);
    return decision;
  }

  /** The explanation for operators; no side effects (nothing is closed). */
  async where(pool: string, user: string, elsewhere: readonly string[] = []): Promise<WhereReport> {
    const spec = this.spec(pool);
    const live = await this.liveMembers(pool, user);
    // Sessions the caller sees beyond this process (a cluster primary asks its workers).
    for (const m of elsewhere) if (spec.members.some((x) => x.name === m) && !live.members.includes(m)) { live.members.push(m); live.sessions++; }
    const states = this.statesFor(spec);
    const d = choosePoolMember({ user, pool: spec, states, live: live.members, now: this.now() });
    const weight = new Map(spec.members.map((m) => [m.name, m.weight]));
    const report: WhereReport = {
      user,
      pool,
      member: d.kind === 'route' ? d.member : null,
      reason: d.kind === 'route' ? d.reason : d.kind === 'wait' ? `moving: closing the sessions on ${d.holder}` : 'no member may take logins',
      target: d.kind === 'none' ? null : d.target,
      order: d.order.map((m) => {
        const s = states.get(m) ?? { condition: 'up' as const, since: this.startedAt };
        return { member: m, weight: weight.get(m) ?? 1, condition: s.condition, since: new Date(s.since).toISOString() };
      }),
      conditions: this.conditionSource,
      live,
      drainFraction: Number(drainFraction(user).toFixed(4)),
    };
    if (d.kind === 'route' && d.pendingMove) report.pendingMove = { to: d.pendingMove.to, at: new Date(d.pendingMove.at).toISOString(), reason: d.pendingMove.reason };
    return report;
  }

  /** Carry out due moves for this process's sessions and refresh the live-users gauge. */
  sweep(): void {
    const now = this.now();
    this.syncMembership(now);
    const byUser = new Map<string, { pool: string; user: string; members: Set<string> }>();
    for (const s of this.opts.sessions.list()) {
      const { pool, user, backend, phase } = s.info;
      if (!pool || !user || !backend || !CLOSING_SESSION_PHASES.includes(phase)) continue;
      const key = `${pool}\0${normaliseUser(user)}`;
      const e = byUser.get(key) ?? { pool, user, members: new Set<string>() };
      e.members.add(backend);
      byUser.set(key, e);
    }
    poolUsersLive.reset();
    const pools = this.opts.config().pools;
    for (const { pool, user, members } of byUser.values()) {
      for (const m of members) poolUsersLive.inc({ pool, member: m });
      if (!pools[pool]) continue;
      const spec = this.spec(pool);
      const decision = choosePoolMember({ user, pool: spec, states: this.statesFor(spec), live: [...members], now });
      this.applyKicks(pool, user, decision);
    }
    for (const [k, at] of this.kicked) if (now - at > REKICK_AFTER_MS) this.kicked.delete(k);
    const grace = this.opts.switchGraceMs ?? SWITCH_GRACE_MS;
    for (const [k, e] of this.lastEnded) if (now - e.at > grace) this.lastEnded.delete(k);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      try { this.sweep(); } catch (e) { this.opts.logger?.error({ event: 'pool_sweep_failed', err: e instanceof Error ? e.message : String(e) }, 'pool sweep failed'); }
    }, this.opts.sweepIntervalMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Member states as the choice sees them. A member added by a reload counts from the moment its config was first read here,
   * not from when health first saw the backend (every configured backend is probed from the start): its users' live sessions
   * elsewhere then move under the usual rule (moveBackAfterMs), not at once. A removed member forgets when it joined.
   */
  private statesFor(spec: PoolSpec): ReadonlyMap<string, MemberState> {
    const now = this.now();
    this.syncMembership(now);
    for (const m of spec.members) if (!this.states.has(m.name)) this.states.set(m.name, { condition: memberCondition(m.name, 'up', this.tierView), since: now });
    let adjusted: Map<string, MemberState> | undefined;
    for (const m of spec.members) {
      const state = this.states.get(m.name)!;
      const joined = this.joined.get(`${spec.name}\0${m.name}`) ?? now;
      if (joined > state.since) (adjusted ??= new Map(this.states)).set(m.name, { condition: state.condition, since: joined });
    }
    return adjusted ?? this.states;
  }

  /** After a reload (a new pools object): members new to a pool joined `at`, removed ones are forgotten. */
  private syncMembership(at: number): void {
    const pools = this.opts.config().pools;
    if (pools === this.joinedFrom) return;
    this.joinedFrom = pools;
    const current = new Set<string>();
    for (const name of Object.keys(pools)) for (const m of poolSpec({ pools }, name)?.members ?? []) current.add(`${name}\0${m.name}`);
    for (const key of this.joined.keys()) if (!current.has(key)) this.joined.delete(key);
    for (const key of current) if (!this.joined.has(key)) this.joined.set(key, at);
  }

  /** Member states of a pool as the choice sees them now (the tier's conflict sweep decides with them). */
  memberStates(pool: string): ReadonlyMap<string, MemberState> {
    return this.statesFor(this.spec(pool));
  }

  private async liveMembers(pool: string, user: string, loginPath = false): Promise<WhereReport['live']> {
    const members = new Set<string>();
    let sessions = 0;
    const inPool = new Set(this.spec(pool).members.map((m) => m.name));
    const norm = normaliseUser(user);
    for (const s of this.opts.sessions.list()) {
      const i = s.info;
      if (i.pool !== pool || !i.backend || !i.user || !CLOSING_SESSION_PHASES.includes(i.phase) || normaliseUser(i.user) !== norm) continue;
      members.add(i.backend);
      sessions++;
    }
    let source: WhereReport['live']['source'] = 'process';
    if (this.opts.tier) {
      const t = await this.opts.tier.list(user, { loginPath });
      source = t.source === 'tier' ? 'tier' : 'local-fallback';
      for (const s of t.sessions) {
        if (!inPool.has(s.backend)) continue;
        if (!members.has(s.backend)) sessions++;
        members.add(s.backend);
      }
    }
    // This process's sessions are real even on a backend a reload took out of the pool (they must close before the user moves).
    return { source, members: [...members], sessions };
  }

  private applyKicks(pool: string, user: string, decision: PoolDecision): void {
    if (decision.kick.length === 0) return;
    const now = this.now();
    const norm = normaliseUser(user);
    for (const k of decision.kick) {
      const key = `${pool}\0${norm}\0${k.member}`;
      const last = this.kicked.get(key);
      if (last !== undefined && now - last < REKICK_AFTER_MS) continue;
      const victims = this.opts.sessions.list().filter((s) => s.info.pool === pool && s.info.backend === k.member && !!s.info.user
        && normaliseUser(s.info.user) === norm && s.info.phase === 'relay');
      this.kicked.set(key, now);
      if (victims.length === 0) continue;
      poolMovesTotal.inc({ pool, reason: k.reason });
      poolSessionsClosedTotal.inc({ pool, member: k.member, reason: k.reason }, victims.length);
      this.opts.logger?.info({ event: 'pool_move', pool, user, from: k.member, reason: k.reason, sessions: victims.length }, `closing ${victims.length} session(s) of ${user} on ${k.member} (${k.reason})`);
      for (const s of victims) {
        try { s.kick(new ProxyError('POOL_MOVE', `${pool}: ${k.reason} from ${k.member}`)); } catch { /* already closing */ }
      }
    }
  }
}
