// Owns split-brain detection for one backend endpoint from the greeting identity every connection sees (probes and real logins).
// Must not do I/O, read clocks or decide policy; the health facade feeds it and acts on what it returns.

export interface SplitBrainOptions {
  /** Changes are looked at within this window. */
  windowMs: number;
  /** Split brain ends once one identity has been the only one seen for this long. */
  stableMs: number;
}

export type SplitBrainEvent =
  | { kind: 'entered'; identities: string[] }
  | { kind: 'cleared'; identity: string }
  | null;

interface Change { at: number; from: string; to: string }

/** Returns to an identity seen just before a change, within the window, that make a split brain (A→B→A→B). */
const RETURNS_FOR_SPLIT_BRAIN = 2;

/**
 * A single change (A→B) is a failover: the service address moved. Two nodes answering in turn show as changes back to
 * an identity that was current before (A→B→A→B) within the window; that is a split brain, until one identity has been
 * the only one for stableMs.
 */
export class IdentityTracker {
  private current: string | undefined;
  private currentSince = 0;
  private changes: Change[] = [];
  private split = false;

  constructor(private readonly opts: SplitBrainOptions) {}

  get active(): boolean { return this.split; }
  get identity(): string | undefined { return this.current; }

  /** Record one connection's identity; returns the split-brain event it caused, if any. */
  observe(identity: string, now: number): SplitBrainEvent {
    if (identity === '') return this.tick(now);
    if (this.current !== undefined && identity !== this.current) {
      this.changes.push({ at: now, from: this.current, to: identity });
      this.currentSince = now;
    } else if (this.current === undefined) {
      this.currentSince = now;
    }
    this.current = identity;
    this.prune(now);
    if (!this.split && this.returns() >= RETURNS_FOR_SPLIT_BRAIN) {
      this.split = true;
      return { kind: 'entered', identities: [...new Set(this.changes.flatMap((c) => [c.from, c.to]))] };
    }
    return this.tick(now);
  }

  /** Time passing (a probe without identity, or a periodic check): may end a split brain. */
  tick(now: number): SplitBrainEvent {
    if (this.split && this.current !== undefined && now - this.currentSince >= this.opts.stableMs) {
      this.split = false;
      this.changes = [];
      return { kind: 'cleared', identity: this.current };
    }
    return null;
  }

  private prune(now: number): void {
    this.changes = this.changes.filter((c) => now - c.at <= this.opts.windowMs);
  }

  private returns(): number {
    let n = 0;
    for (let i = 1; i < this.changes.length; i++) {
      const c = this.changes[i]!;
      if (this.changes.slice(0, i).some((earlier) => earlier.from === c.to)) n++;
    }
    return n;
  }
}
