// Owns the pure choice of a pool member for a user: weighted rendezvous hashing plus the affinity rules (failover, sticky move-back, drain).
// Must not read clocks, health, registries or sockets: every input (member states, live sessions, now) is a parameter.
import { createHash } from 'node:crypto';
import type { Config } from '../config/schema.js';

export interface PoolMember {
  name: string;
  /** Relative share of users (> 0). */
  weight: number;
}

export interface PoolSpec {
  name: string;
  members: readonly PoolMember[];
  moveBackAfterMs: number;
  drainWindowMs: number;
}

/** What a member may do now: take logins (`up`), take none (`down`), or drain its users (`maintenance`). */
export type MemberCondition = 'up' | 'down' | 'maintenance';

export interface MemberState {
  condition: MemberCondition;
  /** When the member entered this condition (ms, the caller's clock). */
  since: number;
}

/**
 * The tier's shared backend view as the pool sees it (config `tier:`): whether it was read from Redis at its last refresh,
 * the endpoints its quorum verdict holds down (`backend\tprotocol`) and the tier-wide maintenance flags (backends).
 */
export interface TierMemberView {
  available: boolean;
  down: readonly string[];
  maintenance: readonly string[];
}

/**
 * A member's condition from the evidence at hand. Without a tier view (no `tier:`, or Redis not read at the last refresh)
 * this instance's own folded health decides. With one, the tier decides for every instance alike: maintenance when the
 * tier flags it (or this instance has it in maintenance: an operator's intent, also written to the tier), down when the
 * quorum verdict holds any of its endpoints down, else up, even when this instance's own probes fail (a local
 * network fault must not send one user to another member than the rest of the tier does).
 */
export function memberCondition(backend: string, local: MemberCondition, tier: TierMemberView | undefined): MemberCondition {
  if (!tier || !tier.available) return local;
  if (local === 'maintenance' || tier.maintenance.includes(backend)) return 'maintenance';
  return tier.down.some((k) => k.startsWith(`${backend}\t`)) ? 'down' : 'up';
}

export type PoolReason =
  /** The user's first choice by hash. */
  | 'hash'
  /** Higher choices may not take logins (down or maintenance); the next one serves. */
  | 'failover'
  /** The user's live sessions are on a member that is not (or no longer) the current choice; a move is pending. */
  | 'live-sessions'
  /** The user's live sessions are on a member in maintenance; they follow it until the user's drain moment. */
  | 'draining';

/** Why sessions are closed to let a user move; also the `reason` label of the moves metric (`removed`: the member left the pool by a reload). */
export type MoveReason = 'move-back' | 'drain' | 'down' | 'conflict' | 'removed';

export interface PoolKick {
  member: string;
  reason: MoveReason;
}

export type PoolDecision =
  | {
      kind: 'route';
      member: string;
      reason: PoolReason;
      /** Every member by hash preference, first = the user's first choice (weights applied). */
      order: string[];
      /** The member the user goes to once nothing holds them elsewhere. */
      target: string;
      /** Set while the user is held on `member` away from `target`: when their sessions there will be closed. */
      pendingMove?: { to: string; at: number; reason: MoveReason };
      /** Live sessions to close now (they are on a member the user must leave). */
      kick: PoolKick[];
    }
  | {
      /** The user's move is due and their sessions on `holder` are being closed: answer a temporary failure until they are gone. */
      kind: 'wait';
      holder: string;
      target: string;
      order: string[];
      kick: PoolKick[];
    }
  | { kind: 'none'; order: string[]; kick: PoolKick[] };

export interface PoolRouteInput {
  user: string;
  pool: PoolSpec;
  /** State per member; a member without an entry counts as up since 0. */
  states: ReadonlyMap<string, MemberState>;
  /**
   * Members holding the user's live sessions (anywhere the caller can see: this process, or the tier registry). A backend that is
   * not (or no longer) a member counts only when the caller knows the session is real (its own): the tier registry's entries on
   * non-members may be stale and are left out by the caller.
   */
  live: readonly string[];
  now: number;
}

/** The one normalisation of login names for hashing: Unicode NFC, trimmed, lower case. */
export function normaliseUser(user: string): string {
  return user.normalize('NFC').trim().toLowerCase();
}

const TWO_POW_53 = 2 ** 53;

/** 128 bits of SHA-256 as four uint32 words: the stable, version-independent seed of every hash below. */
function words(text: string): [number, number, number, number] {
  const d = createHash('sha256').update(text).digest();
  return [d.readUInt32BE(0), d.readUInt32BE(4), d.readUInt32BE(8), d.readUInt32BE(12)];
}

/** MurmurHash3's 32-bit finaliser: a bijection with full avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const seeds = new Map<string, [number, number, number, number]>();
function memberSeed(name: string): [number, number, number, number] {
  let s = seeds.get(name);
  if (!s) {
    s = words(`member\0${name}`);
    if (seeds.size > 10_000) seeds.clear();
    seeds.set(name, s);
  }
  return s;
}

/** A uniform value in (0, 1) for (user key, member seed): one SHA-256 per user, then integer mixing per member. */
function unit(u: readonly number[], s: readonly number[]): number {
  const a = fmix32((u[0]! ^ s[0]!) >>> 0);
  const b = fmix32((u[1]! ^ s[1]! ^ a) >>> 0);
  const c = fmix32((a ^ u[2]! ^ s[2]! ^ Math.imul(b, 0x9e3779b1)) >>> 0);
  const d = fmix32((b ^ u[3]! ^ s[3]! ^ c) >>> 0);
  return ((c >>> 11) * 2 ** 32 + d + 0.5) / TWO_POW_53;
}

/**
 * Members in hash preference for `user`: weighted rendezvous hashing with the logarithmic method
 * (score = −weight / ln(u), u uniform in (0,1) per member and user); the highest score wins. Each member's
 * share is weight / Σweights, and adding or removing a member only moves users to or from that member.
 */
export function rankMembers(user: string, members: readonly PoolMember[]): string[] {
  const u = words(normaliseUser(user));
  const scored = members.map((m) => ({ name: m.name, score: -m.weight / Math.log(unit(u, memberSeed(m.name))) }));
  scored.sort((x, y) => y.score - x.score || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  return scored.map((s) => s.name);
}

/** Where in a drain window this user's sessions are closed: a fixed fraction in (0, 1) per user, so drains spread evenly. */
export function drainFraction(user: string): number {
  const u = words(`drain\0${normaliseUser(user)}`);
  return ((u[0] >>> 11) * 2 ** 32 + u[1] + 0.5) / TWO_POW_53;
}

function stateOf(states: ReadonlyMap<string, MemberState>, member: string): MemberState {
  return states.get(member) ?? { condition: 'up', since: 0 };
}

/**
 * The member that serves `user` now, and why. Rules (never two members for one user):
 * - nothing live elsewhere: the first member by hash that may take logins;
 * - live sessions on a member that is down: they are closed, the user goes to the next choice;
 * - live sessions on a member in maintenance: new sessions follow them until the user's drain moment
 *   (maintenance start + drainFraction × drainWindowMs); then they are closed and the user moves on;
 * - live sessions on an up member that is not the current choice (a member came back or was added):
 *   new sessions follow them until the choice has been up for moveBackAfterMs; then they are closed;
 * - once a move is due, logins wait (temporary failure) until the closed sessions are gone;
 * - live sessions on several members (a race without shared state): all but the best held one are closed;
 * - live sessions on a backend that is no longer a member (a reload removed it): they are closed and logins wait.
 */
export function choosePoolMember(input: PoolRouteInput): PoolDecision {
  const decision = chooseAmongMembers(input);
  // Sessions on a backend a reload took out of the pool: closed, and logins wait until they are gone (the member still
  // serves them, so routing the user elsewhere at once would put them on two servers).
  const removed = [...new Set(input.live)].filter((m) => !input.pool.members.some((x) => x.name === m));
  if (removed.length === 0) return decision;
  const kick = [...decision.kick, ...removed.map((member) => ({ member, reason: 'removed' as const }))];
  if (decision.kind === 'none') return { ...decision, kick };
  return { kind: 'wait', holder: removed[0]!, target: decision.target, order: decision.order, kick };
}

function chooseAmongMembers(input: PoolRouteInput): PoolDecision {
  const { pool, states, now } = input;
  const order = rankMembers(input.user, pool.members);
  const known = new Set(order);
  const kick: PoolKick[] = [];
  const target = order.find((m) => stateOf(states, m).condition === 'up');
  const liveSet = new Set(input.live.filter((m) => known.has(m)));
  const holders: string[] = [];
  for (const m of order) {
    if (!liveSet.has(m)) continue;
    if (stateOf(states, m).condition === 'down') kick.push({ member: m, reason: 'down' });
    else holders.push(m);
  }
  // Prefer keeping the holder the user is meant to be on; otherwise the best-ranked holder.
  const holder = target !== undefined && holders.includes(target) ? target : holders[0];
  for (const m of holders) if (m !== holder) kick.push({ member: m, reason: 'conflict' });

  if (holder === undefined || holder === target) {
    if (target === undefined) return { kind: 'none', order, kick };
    return { kind: 'route', member: target, reason: target === order[0] ? 'hash' : 'failover', order, target, kick };
  }

  const held = stateOf(states, holder);
  let due: number;
  let moveReason: MoveReason;
  if (held.condition === 'maintenance') {
    due = held.since + Math.floor(drainFraction(input.user) * pool.drainWindowMs);
    moveReason = 'drain';
  } else if (target === undefined) {
    // Only the holder may serve (others down or in maintenance): stay.
    return { kind: 'route', member: holder, reason: 'live-sessions', order, target: holder, kick };
  } else {
    due = stateOf(states, target).since + pool.moveBackAfterMs;
    moveReason = 'move-back';
  }
  if (now < due || target === undefined) {
    return {
      kind: 'route',
      member: holder,
      reason: moveReason === 'drain' ? 'draining' : 'live-sessions',
      order,
      target: target ?? holder,
      ...(target !== undefined ? { pendingMove: { to: target, at: due, reason: moveReason } } : {}),
      kick,
    };
  }
  kick.push({ member: holder, reason: moveReason });
  return { kind: 'wait', holder, target, order, kick };
}

/** The pool a host attribute value names, as a PoolSpec; undefined when it names none. */
export function poolSpec(config: Pick<Config, 'pools'>, name: string): PoolSpec | undefined {
  const p = config.pools[name];
  if (!p) return undefined;
  return {
    name,
    members: p.members.map((m) => (typeof m === 'string' ? { name: m, weight: 1 } : { name: m.backend, weight: m.weight })),
    moveBackAfterMs: p.moveBackAfterMs,
    drainWindowMs: p.drainWindowMs,
  };
}
