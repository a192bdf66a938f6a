// Owns the pure health state machine of one backend endpoint: unknown → up ⇄ suspect → down → up, rise/fall hysteresis, maintenance, trickle.
// Must not do I/O, read clocks or timers, or log; callers pass `now` and act on the returned transitions.

export type HealthState = 'unknown' | 'up' | 'suspect' | 'down';
/** What callers see: the health state, or `maintenance` while an operator has drained the backend. */
export type EffectiveState = HealthState | 'maintenance';

export interface Transition {
  from: EffectiveState;
  to: EffectiveState;
  at: number;
  reason: string;
}

export interface Outcome {
  ok: boolean;
  /** probe: active prober; passive: a real connect/login outcome. */
  source: 'probe' | 'passive';
  /** A failure where the backend accepted the connection and then said nothing (hung process, SIGSTOP). */
  hang?: boolean;
  /** Short, already-sanitised detail for the transition reason (e.g. "ECONNREFUSED"). */
  detail?: string;
}

export interface StateOptions {
  /** Consecutive successes that bring a down backend up. */
  rise: number;
  /** Consecutive failures that bring an up backend down (suspect in between). */
  fall: number;
  /** While down, one attempt may pass every this many ms; 0 disables the trickle. */
  trickleIntervalMs: number;
}

export interface StateView {
  state: EffectiveState;
  health: HealthState;
  maintenance: boolean;
  /** When the effective state last changed (ms since epoch), or when tracking started. */
  since: number;
  consecutiveOk: number;
  consecutiveFail: number;
  /** Start of the current run of failures (null after a success): how long the backend has been failing. */
  failingSince: number | null;
  /** The latest three failures were hangs (accepted, never answered), not refusals. */
  hung: boolean;
}

export class BackendState {
  private health: HealthState = 'unknown';
  private maintenance = false;
  private since: number;
  private okRun = 0;
  private failRun = 0;
  private lastTrickleAt = 0;
  private failingSince: number | null = null;
  private hung = false;
  /** Consecutive hangs (one or two can be a server closing its listeners while it shuts down). */
  private hangRun = 0;
  /** It has served at least once: only a backend that was serving can be in a failover worth riding through. */
  private seenOk = false;

  constructor(private readonly opts: StateOptions, now: number) {
    this.since = now;
    if (opts.rise < 1 || opts.fall < 1) throw new RangeError('rise and fall must be ≥ 1');
  }

  get state(): EffectiveState { return this.maintenance ? 'maintenance' : this.health; }

  view(): StateView {
    return { state: this.state, health: this.health, maintenance: this.maintenance, since: this.since, consecutiveOk: this.okRun, consecutiveFail: this.failRun, failingSince: this.failingSince, hung: this.hung };
  }

  /** Feed one probe or passive outcome; returns the transition it caused, if any. */
  record(outcome: Outcome, now: number): Transition | null {
    const before = this.state;
    const what = `${outcome.source} ${outcome.ok ? 'ok' : 'failed'}${outcome.detail ? `: ${outcome.detail}` : ''}`;
    if (outcome.ok) {
      this.failRun = 0;
      this.okRun++;
      this.hung = false;
      this.hangRun = 0;
      this.seenOk = true;
      const wasDown = this.health === 'down';
      // A real login that worked is proof enough: no need to wait for `rise` probes.
      if (!wasDown || this.okRun >= this.opts.rise || outcome.source === 'passive') this.health = 'up';
      // The failure run ends when the backend serves again, not at the first good probe of `rise`: until then a login
      // may still ride through (it would otherwise be refused in the gap between the first good probe and the rise).
      if (this.health === 'up') this.failingSince = null;
      return this.settle(before, now, wasDown ? `${what} (${this.okRun}/${this.opts.rise})` : what);
    }
    this.okRun = 0;
    this.failRun++;
    if (this.seenOk) this.failingSince ??= now;
    this.hangRun = outcome.hang === true ? this.hangRun + 1 : 0;
    this.hung = this.hangRun >= 3;
    if (this.health !== 'down') {
      const next: HealthState = this.failRun >= this.opts.fall ? 'down' : 'suspect';
      if (next === 'down') this.lastTrickleAt = now;
      this.health = next;
    }
    return this.settle(before, now, `${what} (${Math.min(this.failRun, this.opts.fall)}/${this.opts.fall})`);
  }

  /** Administrative drain on/off; health keeps being tracked underneath. */
  setMaintenance(enabled: boolean, now: number, reason = enabled ? 'maintenance on' : 'maintenance off'): Transition | null {
    const before = this.state;
    this.maintenance = enabled;
    return this.settle(before, now, reason);
  }

  /**
   * Adopt a state decided elsewhere (a cluster worker receiving the primary's view).
   * Counters reset; the trickle clock restarts when entering down.
   */
  adopt(health: HealthState, maintenance: boolean, since: number, now: number, failing: { since: number | null; hung: boolean } = { since: null, hung: false }): Transition | null {
    const before = this.state;
    if (health === 'down' && this.health !== 'down') this.lastTrickleAt = now;
    this.health = health;
    this.maintenance = maintenance;
    this.failingSince = failing.since;
    this.hung = failing.hung;
    this.seenOk ||= health === 'up' || health === 'suspect' || failing.since !== null;
    this.okRun = 0;
    this.failRun = 0;
    const t = this.settle(before, now, 'state from primary');
    this.since = since;
    if (t) t.at = since;
    return t;
  }

  /**
   * Ride-through: a login to this endpoint may keep retrying until this time (ms) — `holdMs` after the current run of
   * failures began (a failover in progress) — or null when it must not: failing for longer, hung (a backend that accepts
   * and never answers would hold every retrying login), or never seen serving (nothing to fail over). Serving and not
   * failing here (a worker whose failure report has not come back from the primary yet): `holdMs` from now.
   */
  rideThroughUntil(now: number, holdMs: number): number | null {
    if (holdMs <= 0 || this.hung || this.maintenance || !this.seenOk) return null;
    if (this.failingSince === null) return this.health === 'up' || this.health === 'suspect' ? now + holdMs : null;
    const until = this.failingSince + holdMs;
    return until > now ? until : null;
  }

  /**
   * While down: true at most once per trickleIntervalMs (the first one a full interval after going down),
   * so real logins keep testing the backend without sending everyone into a dead one.
   */
  shouldAdmitWhileDown(now: number): boolean {
    if (this.health !== 'down' || this.opts.trickleIntervalMs <= 0) return false;
    if (now - this.lastTrickleAt < this.opts.trickleIntervalMs) return false;
    this.lastTrickleAt = now;
    return true;
  }

  private settle(before: EffectiveState, now: number, reason: string): Transition | null {
    const after = this.state;
    if (after === before) return null;
    this.since = now;
    return { from: before, to: after, at: now, reason };
  }
}

/** Severity order used to fold protocol states into one backend state (worst wins). */
const RANK: Record<EffectiveState, number> = { up: 0, unknown: 1, suspect: 2, down: 3, maintenance: 4 };

/** One state for a backend from its endpoints' states: maintenance, else the worst of down > suspect > unknown > up. */
export function foldStates(states: readonly EffectiveState[]): EffectiveState {
  let worst: EffectiveState = 'unknown';
  let seen = false;
  for (const s of states) {
    if (!seen || RANK[s] > RANK[worst]) worst = s;
    seen = true;
  }
  return worst;
}

/** True when a login may be sent there without the trickle: unknown is tried, suspect is still serving. */
export function isServing(state: EffectiveState): boolean {
  return state === 'up' || state === 'suspect' || state === 'unknown';
}
