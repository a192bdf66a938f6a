// Owns the per-backend cap on backend connection attempts in flight (connect + greeting + login) and the bounded FIFO
// wait queue behind it, per process. Must not connect, judge health or know protocols; probes never pass through it.
import type { CancelSignal } from '../core/cancel.js';
import type { Clock } from '../core/clock.js';
import { ProxyError } from '../errors.js';
import { backendAttemptsQueuedTotal, backendAttemptsRefusedTotal, backendAttemptWaitSeconds, backendAttemptsWaiting } from '../metrics.js';

export interface AttemptLimits {
  /** Attempts in flight per backend at most; 0 = no cap. */
  maxInFlightPerBackend: number;
  /** Attempts waiting for a slot per backend at most; 0 = none wait (refused at once when the cap is reached). */
  maxQueuedPerBackend: number;
}

/** A slot for one attempt: give it back once the attempt is logged in or has failed. */
export interface AttemptSlot {
  /** This attempt's backend greeted it: the backend is alive (seen by the other attempts' patience). */
  greeted(): void;
  /** Another attempt at this backend was greeted within the last `ms`: the backend is busy, not hung. */
  othersGreetedWithin(ms: number): boolean;
  release(): void;
}

interface Waiter { grant(): void; fail(e: ProxyError): void }
interface Lane { inFlight: number; queue: Waiter[]; lastGreetedAt: number }

export class BackendLimiter {
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly limits: () => AttemptLimits, private readonly clock: Clock) {}

  /**
   * A slot at `backend`: at once while fewer than the cap are in flight, else after the attempts queued before it, within
   * `waitMs` (what is left of the login's budget). Throws ProxyError BACKEND_BUSY when the queue is full or the wait runs
   * out, CLIENT_GONE when `signal` aborts while waiting.
   */
  acquire(backend: string, waitMs: number, signal?: CancelSignal): Promise<AttemptSlot> {
    const lane = this.lane(backend);
    const { maxInFlightPerBackend: cap, maxQueuedPerBackend: maxQueued } = this.limits();
    if (cap <= 0 || (lane.inFlight < cap && lane.queue.length === 0)) return Promise.resolve(this.take(backend, lane));
    if (lane.queue.length >= maxQueued || waitMs <= 0) {
      backendAttemptsRefusedTotal.inc({ backend, reason: 'queue_full' });
      return Promise.reject(new ProxyError('BACKEND_BUSY', `${backend}: ${lane.inFlight} attempts in flight, ${lane.queue.length} waiting (limits ${cap}/${maxQueued})`));
    }
    backendAttemptsQueuedTotal.inc({ backend });
    const queuedAt = this.clock.now();
    return new Promise<AttemptSlot>((resolve, reject) => {
      const leave = (): void => {
        const i = lane.queue.indexOf(waiter);
        if (i >= 0) lane.queue.splice(i, 1);
        backendAttemptsWaiting.set({ backend }, lane.queue.length);
        this.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        grant: () => {
          leave();
          backendAttemptWaitSeconds.observe({ backend }, (this.clock.now() - queuedAt) / 1000);
          resolve(this.take(backend, lane));
        },
        fail: (e) => { leave(); reject(e); },
      };
      const onAbort = (): void => waiter.fail(new ProxyError('CLIENT_GONE', `while waiting for a connection slot at ${backend}`));
      const timer = this.clock.setTimeout(() => {
        backendAttemptsRefusedTotal.inc({ backend, reason: 'wait_timeout' });
        waiter.fail(new ProxyError('BACKEND_BUSY', `${backend}: no connection slot within ${waitMs} ms (${lane.inFlight} attempts in flight)`));
      }, waitMs);
      lane.queue.push(waiter);
      backendAttemptsWaiting.set({ backend }, lane.queue.length);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Attempts in flight at `backend` now (diagnostics, tests). */
  inFlight(backend: string): number {
    return this.lanes.get(backend)?.inFlight ?? 0;
  }

  /** Attempts waiting for a slot at `backend` now. */
  waiting(backend: string): number {
    return this.lanes.get(backend)?.queue.length ?? 0;
  }

  private lane(backend: string): Lane {
    let lane = this.lanes.get(backend);
    if (!lane) { lane = { inFlight: 0, queue: [], lastGreetedAt: -Infinity }; this.lanes.set(backend, lane); }
    return lane;
  }

  private take(backend: string, lane: Lane): AttemptSlot {
    lane.inFlight++;
    let released = false;
    let mine = -Infinity;
    return {
      greeted: () => { mine = lane.lastGreetedAt = this.clock.now(); },
      othersGreetedWithin: (ms) => lane.lastGreetedAt !== mine && this.clock.now() - lane.lastGreetedAt < ms,
      release: () => {
        if (released) return;
        released = true;
        lane.inFlight--;
        this.next(backend, lane);
      },
    };
  }

  /** A slot freed (or the cap raised by a reload): hand it to the longest waiter; forget an idle lane. */
  private next(backend: string, lane: Lane): void {
    const cap = this.limits().maxInFlightPerBackend;
    while (lane.queue.length > 0 && (cap <= 0 || lane.inFlight < cap)) lane.queue[0]!.grant();
    if (lane.inFlight === 0 && lane.queue.length === 0) this.lanes.delete(backend);
  }
}
