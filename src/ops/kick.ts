// Owns spreading the goodbyes to sessions spliced to a backend that went down over a window, so clients do not reconnect in one burst.
// Must not decide when to kick (health.ts / main.ts do) nor know protocols; each session brings its own kick.
import type { ProxyError } from '../errors.js';
import type { LiveSession, SessionRegistry } from '../proxy/sessions.js';
import { systemClock, type Clock } from '../core/clock.js';

export interface KickFilter {
  backend: string;
  /** Session protocol as registered (imap, pop3, submission…); all protocols when unset. */
  protocol?: string;
  /** Phases to kick; by default only relayed (spliced) sessions: logins in progress fail by themselves. */
  phases?: ReadonlyArray<LiveSession['info']['phase']>;
  /** Only sessions that logged in to another node than this identity (a failover moved the address away from theirs). */
  notIdentity?: string;
}

export interface KickPlan {
  /** Sessions that will be kicked. */
  count: number;
  /** Resolves after the last kick (immediately when there was nothing to kick). */
  done: Promise<void>;
  /** Stop kicking the ones not yet kicked (e.g. the backend came back during the window). */
  cancel(): void;
}

/** Delay of the i-th of n kicks: evenly spaced over the window, the first at once. */
export function kickDelays(n: number, windowMs: number): number[] {
  if (n <= 0) return [];
  const step = n > 1 ? windowMs / n : 0;
  return Array.from({ length: n }, (_, i) => Math.round(i * step));
}

/**
 * Kick every matching session over `windowMs`, in random order so no client (say, the first to log in)
 * is always the first to go. Kick errors are swallowed: a session closing on its own is no failure.
 */
export function kickSpread(
  registry: Pick<SessionRegistry, 'list'>,
  filter: KickFilter,
  error: ProxyError,
  windowMs: number,
  clock: Clock = systemClock,
  random: () => number = Math.random,
): KickPlan {
  const phases = filter.phases ?? ['relay'];
  const victims = registry.list({ backend: filter.backend })
    .filter((s) => (!filter.protocol || s.info.protocol === filter.protocol) && phases.includes(s.info.phase)
      && (filter.notIdentity === undefined || (s.info.backendIdentity !== undefined && s.info.backendIdentity !== filter.notIdentity)));
  for (let i = victims.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [victims[i], victims[j]] = [victims[j]!, victims[i]!];
  }
  const delays = kickDelays(victims.length, windowMs);
  const timers: unknown[] = [];
  let remaining = victims.length;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => { resolveDone = r; });
  if (remaining === 0) resolveDone();
  const kickOne = (s: LiveSession): void => {
    try { s.kick(error); } catch { /* already closing */ }
    if (--remaining === 0) resolveDone();
  };
  victims.forEach((s, i) => {
    if (delays[i] === 0) kickOne(s);
    else timers.push(clock.setTimeout(() => kickOne(s), delays[i]!));
  });
  return {
    count: victims.length,
    done,
    cancel: () => {
      for (const t of timers) clock.clearTimeout(t);
      timers.length = 0;
      resolveDone();
    },
  };
}

/** Live sessions per backend (every session that has one), for snapshot(). */
export function countSessionsByBackend(registry: Pick<SessionRegistry, 'list'>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of registry.list()) if (s.info.backend) out[s.info.backend] = (out[s.info.backend] ?? 0) + 1;
  return out;
}
