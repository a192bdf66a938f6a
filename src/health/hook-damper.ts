// Owns which backend state changes reach the operator's hooks (pure: callers pass times): settled changes only (a
// suspect blip that returns is none), and flap detection (Nagios-style) that pauses hooks and sums a flap up in two events.
// Must not run hooks, log, read clocks or change health state; metrics, logs and the admin API keep showing every change.
import type { EffectiveState } from './backend-state.js';

export interface DampingOptions {
  /** Settled changes within windowMs that make a backend flapping; 0 = no flap detection. */
  maxTransitions: number;
  windowMs: number;
  /** A flapping backend with no settled change for this long is stable again. */
  quietMs: number;
}

/** A hook event to fire: `to` (or `from`) is `flapping` when a flap starts (ends). */
export interface DampedEvent { backend: string; from: string; to: string; at: number; reason: string }

interface Track {
  /** The state hooks last heard about (suspect is never one). */
  told: EffectiveState;
  /** The latest settled state seen (while flapping, what hooks will be told when it ends). */
  current: EffectiveState;
  changes: number[];
  flappingSince: number | null;
  lastChange: number;
  /** Settled changes not run as hooks during the current flap. */
  held: number;
}

const OPERATOR: ReadonlySet<EffectiveState> = new Set<EffectiveState>(['maintenance']);

export class HookDamper {
  private readonly tracks = new Map<string, Track>();

  constructor(private opts: DampingOptions) {}

  reconfigure(opts: DampingOptions): void { this.opts = opts; }

  /** True while the backend's hooks are paused for flapping. */
  isFlapping(backend: string): boolean {
    return (this.tracks.get(backend)?.flappingSince ?? null) !== null;
  }

  /** The hook events a backend-level state change causes now (none, the change itself, or the start of a flap). */
  observe(t: DampedEvent & { from: EffectiveState; to: EffectiveState }): DampedEvent[] {
    let tr = this.tracks.get(t.backend);
    if (!tr) { tr = { told: t.from, current: t.from, changes: [], flappingSince: null, lastChange: t.at, held: 0 }; this.tracks.set(t.backend, tr); }
    // suspect is a state on the way (one failed check): hooks hear where it ends, down or back where it came from.
    if (t.to === 'suspect') return [];
    const settledFrom = tr.current;
    tr.current = t.to;
    if (t.to === settledFrom) return [];
    // Maintenance is an operator's own action: always told, never counted as a flap.
    if (OPERATOR.has(t.to) || OPERATOR.has(settledFrom)) return this.tell(tr, t);
    if (settledFrom !== 'unknown') {
      tr.changes = tr.changes.filter((at) => at > t.at - this.opts.windowMs);
      tr.changes.push(t.at);
      tr.lastChange = t.at;
    }
    if (tr.flappingSince !== null) { tr.held++; return []; }
    if (this.opts.maxTransitions > 0 && tr.changes.length >= this.opts.maxTransitions) {
      tr.flappingSince = t.at;
      tr.held = 0;
      const from = tr.told;
      tr.told = t.to;
      return [{ backend: t.backend, from, to: 'flapping', at: t.at, reason: `${tr.changes.length} state changes within ${this.opts.windowMs} ms (latest ${settledFrom} -> ${t.to}: ${t.reason}); hooks paused until no change for ${this.opts.quietMs} ms` }];
    }
    return this.tell(tr, { ...t, from: tr.told });
  }

  /** Backends flapping with no settled change for quietMs: the one event each that ends the flap (`flapping` → current). */
  settle(now: number): DampedEvent[] {
    const out: DampedEvent[] = [];
    for (const [backend, tr] of this.tracks) {
      if (tr.flappingSince === null || now - tr.lastChange < this.opts.quietMs) continue;
      out.push({ backend, from: 'flapping', to: tr.current, at: now, reason: `no state change for ${this.opts.quietMs} ms after flapping since ${new Date(tr.flappingSince).toISOString()} (${tr.held} changes not run as hooks)` });
      tr.flappingSince = null;
      tr.told = tr.current;
      tr.changes = [];
      tr.held = 0;
    }
    return out;
  }

  /** Forget backends no longer configured. */
  retain(backends: ReadonlySet<string>): void {
    for (const name of this.tracks.keys()) if (!backends.has(name)) this.tracks.delete(name);
  }

  private tell(tr: Track, t: DampedEvent): DampedEvent[] {
    const from = tr.told;
    tr.told = t.to as EffectiveState;
    return from === t.to ? [] : [{ ...t, from }];
  }
}
