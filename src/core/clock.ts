// Owns the injectable clock (time + timers) and the one Budget type (a deadline on that clock), so tests run on fake time.
// Must not hold state beyond one budget's end, nor schedule anything itself.

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real time; timers are unref'd so no proxy timer keeps the process alive on its own (sockets and listeners do). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** One time budget (e.g. connect + backend login): milliseconds left on a clock, never negative. */
export class Budget {
  private readonly started: number;
  constructor(private readonly clock: Clock, readonly ms: number) {
    this.started = clock.now();
  }
  /** Milliseconds left (0 when used up). */
  left(): number { return Math.max(0, this.started + this.ms - this.clock.now()); }
  /** Milliseconds left for a timer: at least 1, so a used-up budget still fires at once. */
  timer(): number { return Math.max(1, this.left()); }
  elapsed(): number { return this.clock.now() - this.started; }
}
