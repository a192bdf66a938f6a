// Owns the schedule of LDAP server probes: one loop per server, every intervalMs while up and downIntervalMs while down, one probe in flight each.
// Must not speak LDAP or judge results itself: `probe` (ldap.ts) runs one bind + base search and marks the server.
import type { LdapServer } from './ldap-servers.js';

export interface LdapProbeLoopOptions {
  servers: readonly LdapServer[];
  intervalMs: number;
  downIntervalMs: number;
  /** Runs one probe of a server and records its outcome; never rejects. */
  probe(server: LdapServer): Promise<void>;
  /** Called after every round of a server (pool housekeeping). */
  afterProbe?(server: LdapServer): void;
  random?: () => number;
}

export class LdapProbeLoop {
  private readonly timers = new Map<LdapServer, NodeJS.Timeout>();
  private readonly inFlight = new Map<LdapServer, Promise<void>>();
  private running = false;
  private readonly random: () => number;

  constructor(private readonly opts: LdapProbeLoopOptions) {
    this.random = opts.random ?? Math.random;
  }

  /** First probes right away (spread over 100 ms), so a server dead at start is known within one probe. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const s of this.opts.servers) this.schedule(s, this.random() * 100);
  }

  stop(): void {
    this.running = false;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Probe every server now (joining probes in flight); resolves when all have finished. */
  async probeAll(): Promise<void> {
    await Promise.all(this.opts.servers.map((s) => this.run(s)));
  }

  /** A server just failed a request: probe it on the down schedule instead of waiting out the up interval. */
  hurry(server: LdapServer): void {
    if (this.running && !this.inFlight.has(server)) this.schedule(server, this.delay(server));
  }

  private delay(server: LdapServer): number {
    const base = server.up ? this.opts.intervalMs : this.opts.downIntervalMs;
    return Math.max(1, Math.round(base * (0.9 + 0.2 * this.random())));
  }

  private schedule(server: LdapServer, ms: number): void {
    clearTimeout(this.timers.get(server));
    const t = setTimeout(() => {
      this.timers.delete(server);
      void this.run(server).then(() => { if (this.running) this.schedule(server, this.delay(server)); });
    }, ms);
    t.unref();
    this.timers.set(server, t);
  }

  private run(server: LdapServer): Promise<void> {
    const running = this.inFlight.get(server);
    if (running) return running;
    const p = this.opts.probe(server).catch(() => undefined).finally(() => {
      this.inFlight.delete(server);
      this.opts.afterProbe?.(server);
    });
    this.inFlight.set(server, p);
    return p;
  }
}
