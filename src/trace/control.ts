// Owns the operator's side of trace on demand in the process that serves the admin API: start/stop a trace, log it,
// end it on time (one log line), and hand the new list to whoever spreads it (cluster workers over IPC).
// Must not touch sessions; they read the TraceTable of their own process.
import type { Logger } from '../log.js';
import { TraceTable, type TraceEntry } from './table.js';

export interface TraceAnswer {
  user: string;
  /** ISO time the trace ends; absent when it was stopped. */
  until?: string;
  active: boolean;
  /** Processes that apply it (workers in cluster mode, 1 otherwise). */
  processes: number;
}

export class TraceControl {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  /** `spread` pushes the list to other processes and resolves with how many took it (default: only this one). */
  constructor(readonly table: TraceTable, private readonly log: Logger, private readonly spread: (list: TraceEntry[]) => Promise<number> = async () => 1) {}

  async set(user: string, minutes: number): Promise<TraceAnswer> {
    const entry = this.table.set(user, minutes);
    const k = user.trim().toLowerCase();
    clearTimeout(this.timers.get(k));
    this.timers.delete(k);
    if (entry) {
      const t = setTimeout(() => { this.timers.delete(k); this.log.info({ event: 'trace_ended', traced: entry.user }, 'trace ended'); void this.spread(this.table.list()).catch(() => undefined); }, Math.max(0, entry.until - Date.now()));
      t.unref();
      this.timers.set(k, t);
      this.log.warn({ event: 'trace_started', traced: entry.user, until: new Date(entry.until).toISOString() }, `tracing sessions of ${entry.user} for ${minutes} minutes`);
    } else {
      this.log.warn({ event: 'trace_stopped', traced: user.trim() }, `trace of ${user.trim()} stopped`);
    }
    const processes = await this.spread(this.table.list());
    return { user: entry?.user ?? user.trim(), ...(entry ? { until: new Date(entry.until).toISOString() } : {}), active: !!entry, processes };
  }

  list(): Array<{ user: string; until: string }> {
    return this.table.list().map((e) => ({ user: e.user, until: new Date(e.until).toISOString() }));
  }

  close(): void { for (const t of this.timers.values()) clearTimeout(t); this.timers.clear(); }
}
