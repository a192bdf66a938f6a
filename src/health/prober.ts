// Owns scheduling of active probes: one loop per backend endpoint on a jittered interval, one probe in flight each, identity tracking.
// Must not decide health (it hands results to onResult) nor open more than one probe per endpoint at a time.
import type { Config } from '../config/schema.js';
import { routeForBackend, type Route, type RouteProtocol } from '../directory/backends.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { backendIdentityChangesTotal, probesTotal } from '../metrics.js';
import { systemClock, type Clock } from '../core/clock.js';
import { optional } from '../core/optional.js';
import { probeOnce, type DeepProbe, type Dial, type ProbeResult } from './probe.js';

export const PROBED_PROTOCOLS: readonly RouteProtocol[] = ['imap', 'pop3', 'submission', 'lmtp', 'smtp', 'sieve'];

export interface ProberOptions {
  targets: Route[];
  intervalMs: number;
  jitterRatio: number;
  timeoutMs: number;
  onResult(result: ProbeResult): void;
  /** The interval before an endpoint's next probe (faster while suspect or down); default intervalMs. */
  intervalFor?(backend: string, protocol: RouteProtocol): number;
  /** Called when a probe sees a different identity than the previous successful probe. */
  onIdentityChange?(change: { backend: string; protocol: RouteProtocol; from: string; to: string; at: number }): void;
  dial?: Dial;
  deepProbe?: DeepProbe;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
}

interface Loop {
  route: Route;
  timer?: unknown;
  inFlight?: Promise<ProbeResult> | undefined;
  identity?: string;
}

/**
 * Every configured endpoint of every backend (the prober's targets), plus the inbound delivery endpoint (LMTP or SMTP)
 * of each backend when an smtp listener delivers to it on the protocol's default port without a table entry: such an
 * endpoint was never probed, so it kept the state of its last delivery ("up") while its server was stopped.
 */
export function probeTargets(config: Pick<Config, 'backends'> & Partial<Pick<Config, 'listeners' | 'smtp'>>): Route[] {
  const inbound = (config.listeners ?? []).some((l) => l.protocol === 'smtp');
  const out: Route[] = [];
  for (const [name, b] of Object.entries(config.backends)) {
    const delivery = inbound ? b.inboundDelivery ?? config.smtp?.inboundDelivery ?? 'lmtp' : undefined;
    for (const p of PROBED_PROTOCOLS) if (b[p] || p === delivery) out.push(routeForBackend(config, name, p));
  }
  return out;
}

export const targetKey = (backend: string, protocol: string): string => `${backend}\u0000${protocol}`;

export class Prober {
  private readonly loops = new Map<string, Loop>();
  private running = false;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;

  constructor(private readonly opts: ProberOptions) {
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = opts.logger ?? silentLogger;
    this.setTargets(opts.targets);
  }

  /** Start probing: each endpoint's first probe comes after a random fraction of the jitter window. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const loop of this.loops.values()) this.schedule(loop, this.random() * this.opts.intervalMs * this.opts.jitterRatio);
  }

  stop(): void {
    this.running = false;
    for (const loop of this.loops.values()) this.unschedule(loop);
  }

  /** Replace the target list (config reload): kept endpoints keep their identity and schedule. */
  setTargets(targets: Route[]): void {
    const next = new Map(targets.map((r) => [targetKey(r.backend, r.protocol), r]));
    for (const [key, loop] of this.loops) {
      if (!next.has(key)) { this.unschedule(loop); this.loops.delete(key); }
    }
    for (const [key, route] of next) {
      const loop = this.loops.get(key);
      if (loop) { loop.route = route; continue; }
      const fresh: Loop = { route };
      this.loops.set(key, fresh);
      if (this.running) this.schedule(fresh, this.random() * this.opts.intervalMs * this.opts.jitterRatio);
    }
  }

  /** Probe one endpoint now (or join the probe already in flight). Undefined for an unknown endpoint. */
  probeNow(backend: string, protocol: RouteProtocol): Promise<ProbeResult> | undefined {
    const loop = this.loops.get(targetKey(backend, protocol));
    return loop ? this.run(loop) : undefined;
  }

  /** The endpoint turned suspect or down: probe it now (unless a probe is in flight), then on its faster interval. */
  hurry(backend: string, protocol: RouteProtocol): void {
    const loop = this.loops.get(targetKey(backend, protocol));
    if (loop && this.running && !loop.inFlight) this.schedule(loop, 1);
  }

  /** The interval with ± jitterRatio spread, so many proxies do not probe a backend in lockstep. */
  nextDelay(route?: Route): number {
    const spread = this.opts.jitterRatio * (2 * this.random() - 1);
    const base = route && this.opts.intervalFor ? this.opts.intervalFor(route.backend, route.protocol) : this.opts.intervalMs;
    return Math.max(1, Math.round(base * (1 + spread)));
  }

  private schedule(loop: Loop, delayMs: number): void {
    this.unschedule(loop);
    loop.timer = this.clock.setTimeout(() => {
      loop.timer = undefined;
      void this.run(loop).then(() => {
        if (this.running && this.loops.get(targetKey(loop.route.backend, loop.route.protocol)) === loop && loop.timer === undefined) this.schedule(loop, this.nextDelay(loop.route));
      });
    }, delayMs);
  }

  private unschedule(loop: Loop): void {
    if (loop.timer !== undefined) this.clock.clearTimeout(loop.timer);
    loop.timer = undefined;
  }

  private run(loop: Loop): Promise<ProbeResult> {
    if (loop.inFlight) return loop.inFlight;
    const p = probeOnce(loop.route, { timeoutMs: this.opts.timeoutMs, clock: this.clock, ...optional('dial', this.opts.dial), ...optional('deepProbe', this.opts.deepProbe) })
      .then((result) => {
        delete loop.inFlight;
        this.observe(loop, result);
        return result;
      });
    loop.inFlight = p;
    return p;
  }

  private observe(loop: Loop, result: ProbeResult): void {
    const { backend, protocol } = result;
    probesTotal.inc({ backend, protocol, result: result.ok ? 'ok' : result.failure ?? 'error' });
    if (result.identity !== undefined) {
      const prev = loop.identity;
      loop.identity = result.identity;
      if (prev !== undefined && prev !== result.identity) {
        backendIdentityChangesTotal.inc({ backend, protocol });
        this.log.warn({ event: 'backend_identity_changed', backend, protocol, from: prev, to: result.identity }, 'backend identity changed');
        try { this.opts.onIdentityChange?.({ backend, protocol, from: prev, to: result.identity, at: result.at }); } catch (e) { this.logHandlerError(e); }
      }
    }
    // This host could not even open the probe's connection (out of descriptors or ports): no verdict on the backend, so
    // health, hooks and the tier are not told it failed; the metric (result="local") and this warning show it.
    if (result.failure === 'local') {
      this.log.warn({ event: 'probe_skipped_local', backend, protocol, error: result.error }, 'probe could not connect: out of local resources, backend state kept');
      return;
    }
    try { this.opts.onResult(result); } catch (e) { this.logHandlerError(e); }
  }

  private logHandlerError(e: unknown): void {
    this.log.error({ event: 'probe_handler_error', err: e instanceof Error ? e.message : String(e) }, 'probe result handler threw');
  }
}
