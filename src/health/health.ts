// Owns the health facade: per-endpoint state machines fed by probes and passive outcomes, the admit decision, transition side effects.
// Must not open client connections or kick sessions itself (onBackendDown does); workers adopt the primary's state instead of probing.
import { EventEmitter } from 'node:events';
import type { Config } from '../config/schema.js';
import { routeForBackend, type Route, type RouteProtocol } from '../directory/backends.js';
import { ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { backendFlapping, backendSplitBrain, backendStateTransitionsTotal, backendUp } from '../metrics.js';
import { BackendState, foldStates, type EffectiveState, type HealthState, type Outcome } from './backend-state.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { BackendGate } from './gate.js';
import { HookRunner } from './hooks.js';
import { HookDamper } from './hook-damper.js';
import { imapDeepProbe } from './deep-probe.js';
import type { DeepProbe, Dial, ProbeResult } from './probe.js';
import { Prober, probeTargets, targetKey } from './prober.js';
import { IdentityTracker, type SplitBrainEvent } from './split-brain.js';

export type HealthConfigView = Pick<Config, 'backends' | 'health' | 'instanceName'> & Partial<Pick<Config, 'listeners' | 'smtp'>>;
/** A passive outcome: ok, a failure (refused, closed, bad reply), or a hang (accepted, never greeted). */
export type PassiveOutcome = 'ok' | 'fail' | 'hang';

/** One endpoint's (backend + protocol) state change. */
export interface EndpointTransition { backend: string; protocol: RouteProtocol; from: EffectiveState; to: EffectiveState; at: number; reason: string }
/** A backend's folded state change (what hooks and the transitions metric see). */
export interface BackendTransition { backend: string; from: EffectiveState; to: EffectiveState; at: number; reason: string }

export interface EndpointSnapshot {
  protocol: RouteProtocol;
  state: EffectiveState;
  health: HealthState;
  since: string;
  /** Failing since (ISO), while the latest outcomes are failures: the ride-through hold counts from here. */
  failingSince?: string;
  /** The latest failure was a hang (no ride-through). */
  hung?: boolean;
  /** Two identities answer in turn on this endpoint. */
  splitBrain?: boolean;
  lastProbe?: { ok: boolean; at: string; latencyMs: number; identity?: string; failure?: string; error?: string };
}

export interface BackendSnapshot {
  backend: string;
  state: EffectiveState;
  since: string;
  maintenance: boolean;
  /** Changing state too often: hooks are paused until it is stable (health.flapDetection); `state` is still the true one. */
  flapping?: boolean;
  standby?: string;
  sessions?: number;
  endpoints: EndpointSnapshot[];
}

export interface HealthMonitorOptions {
  config: HealthConfigView;
  /** primary (default): probes and passive outcomes decide. worker: state comes from applyState(). */
  role?: 'primary' | 'worker';
  logger?: Logger;
  clock?: Clock;
  /** An endpoint went down: close the sessions spliced to it (see kickSpread). Errors are logged, not thrown. */
  onBackendDown?(backend: string, protocol: RouteProtocol): void;
  /**
   * A primary that has a standby left down: new logins go to it again. Sessions that failed over to the standby
   * are still there; close them (spread) so one mailbox is not served by both servers.
   */
  onFailback?(primary: string, standby: string, protocol: RouteProtocol): void;
  /**
   * Another node answers at an endpoint's address (its greeting identity changed, no split brain): a failover faster
   * than down detection. Sessions still spliced to the old node sit on a connection nobody answers; close them.
   */
  onFailover?(backend: string, protocol: RouteProtocol, identity: string): void;
  /** Worker role: where report() sends passive outcomes and the greeting identity seen (IPC to the primary). */
  forwardReport?(route: Route, outcome: PassiveOutcome, identity?: string): void;
  /** Hook runner; defaults to one built from config.health.hooks (primary only). */
  hooks?: Pick<HookRunner, 'fire'>;
  dial?: Dial;
  deepProbe?: DeepProbe;
  random?: () => number;
}

interface Endpoint { backend: string; protocol: RouteProtocol; machine: BackendState; identities: IdentityTracker; splitBrain: boolean; lastProbe?: ProbeResult }

export class HealthMonitor extends EventEmitter implements BackendGate {
  private config: HealthConfigView;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly maintenance = new Set<string>();
  private readonly folded = new Map<string, { state: EffectiveState; since: number }>();
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly role: 'primary' | 'worker';
  private readonly hooks: Pick<HookRunner, 'fire'> | undefined;
  private readonly damper: HookDamper;
  private prober: Prober | undefined;

  constructor(private readonly opts: HealthMonitorOptions) {
    super();
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
    this.role = opts.role ?? 'primary';
    this.hooks = this.role === 'primary' ? opts.hooks ?? new HookRunner({ hooks: opts.config.health.hooks, logger: this.log }) : undefined;
    this.damper = new HookDamper(opts.config.health.flapDetection);
    this.ensureConfigured();
  }

  /** Primary: start active probing (when health.enabled). Idempotent. */
  start(): void {
    if (this.role !== 'primary' || !this.config.health.enabled || this.prober) return;
    const h = this.config.health;
    const deepProbe = this.opts.deepProbe ?? imapDeepProbe(h.deepProbe);
    this.prober = new Prober({
      targets: probeTargets(this.config),
      intervalMs: h.intervalMs,
      jitterRatio: h.jitterRatio,
      timeoutMs: h.timeoutMs,
      onResult: (r) => this.recordProbe(r),
      // Suspect or down: probe faster, so a hang is confirmed within seconds and a recovery is used within one.
      intervalFor: (backend, protocol) => (this.stateOf(backend, protocol) === 'suspect' || this.stateOf(backend, protocol) === 'down' ? this.config.health.fastIntervalMs : this.config.health.intervalMs),
      ...(this.opts.dial ? { dial: this.opts.dial } : {}),
      ...(deepProbe ? { deepProbe } : {}),
      clock: this.clock,
      ...(this.opts.random ? { random: this.opts.random } : {}),
      logger: this.log,
    });
    this.prober.start();
  }

  stop(): void {
    this.prober?.stop();
    this.prober = undefined;
  }

  /** New config (SIGHUP): new backends get endpoints, removed ones are forgotten, probe targets follow. */
  reload(config: HealthConfigView): void {
    const wasConfigured = new Set(Object.keys(this.config.backends));
    this.config = config;
    this.damper.reconfigure(config.health.flapDetection);
    const keep = new Set(probeTargets(config).map((r) => targetKey(r.backend, r.protocol)));
    for (const [key, ep] of this.endpoints) {
      if (!wasConfigured.has(ep.backend) || keep.has(key)) continue;
      this.endpoints.delete(key);
      if (this.role === 'primary') backendUp.remove({ backend: ep.backend, protocol: ep.protocol });
    }
    for (const name of wasConfigured) {
      if (!this.isConfigured(name)) { this.folded.delete(name); this.maintenance.delete(name); }
    }
    this.ensureConfigured();
    this.prober?.setTargets(probeTargets(config));
  }

  /** Probe one endpoint now (joins a probe in flight); undefined when not probing it. */
  probeNow(backend: string, protocol: RouteProtocol): Promise<ProbeResult> | undefined {
    return this.prober?.probeNow(backend, protocol);
  }

  admit(route: Route): Route {
    const ep = this.endpoint(route.backend, route.protocol);
    const state = ep.machine.state;
    if (state === 'maintenance') throw new ProxyError('BACKEND_MAINTENANCE', `${route.backend} ${route.protocol}`);
    if (ep.splitBrain && this.config.health.splitBrain.policy === 'refuse') throw new ProxyError('BACKEND_SPLIT_BRAIN', `${route.backend} ${route.protocol}: two servers answer in turn`);
    if (state !== 'down') return route;
    // Active/passive pair: the standby only while the primary is down AND the standby's own state says it serves.
    // No trickle to the primary then: two servers on one mailbox corrupt it.
    if (route.standby) {
      const sb = this.endpoints.get(targetKey(route.standby, route.protocol))?.machine.state;
      if (sb === 'up' || sb === 'suspect') return routeForBackend(this.config, route.standby, route.protocol);
    }
    // Ride-through: a failover in progress (refusing for less than rideThroughMs): the login retries within its budget.
    if (ep.machine.rideThroughUntil(this.clock.now(), this.config.health.rideThroughMs) !== null) return route;
    if (ep.machine.shouldAdmitWhileDown(this.clock.now())) {
      this.log.info({ event: 'backend_trickle', backend: route.backend, protocol: route.protocol }, 'letting one login through to a down backend');
      return route;
    }
    throw new ProxyError('BACKEND_DOWN', `${route.backend} ${route.protocol}`);
  }

  report(route: Route, outcome: PassiveOutcome, identity?: string): void {
    if (this.role === 'worker') {
      try { this.opts.forwardReport?.(route, outcome, identity); } catch (e) { this.logError('forward_report', e); }
      return;
    }
    if (identity !== undefined) this.observeIdentity(route.backend, route.protocol, identity);
    this.record(route.backend, route.protocol, { ok: outcome === 'ok', source: 'passive', ...(outcome === 'hang' ? { hang: true } : {}) });
  }

  /**
   * Until when a login that just failed to reach `route` may retry (ms since epoch), or null to fail now: the backend
   * has been refusing for less than rideThroughMs (a failover in progress), and is not hung.
   */
  rideThroughUntil(route: Route): number | null {
    return this.endpoint(route.backend, route.protocol).machine.rideThroughUntil(this.clock.now(), this.config.health.rideThroughMs);
  }

  /** Feed one active probe result (the prober calls this; tests and the primary's IPC may too). */
  recordProbe(r: ProbeResult): void {
    const ep = this.endpoint(r.backend, r.protocol);
    ep.lastProbe = r;
    this.emit('probe', r);
    if (this.role === 'worker') return;
    if (r.identity !== undefined) this.observeIdentity(r.backend, r.protocol, r.identity);
    else this.splitBrainEvent(ep, ep.identities.tick(this.clock.now()));
    const detail = r.ok ? undefined : r.error ?? r.failure;
    this.record(r.backend, r.protocol, { ok: r.ok, source: 'probe', ...(detail ? { detail } : {}), ...(r.hang ? { hang: true } : {}) });
  }

  /** One connection's greeting identity (a probe or a real login): feeds split-brain detection. Primary only. */
  observeIdentity(backend: string, protocol: RouteProtocol, identity: string): void {
    const ep = this.endpoint(backend, protocol);
    const before = ep.identities.identity;
    this.splitBrainEvent(ep, ep.identities.observe(identity, this.clock.now()));
    this.failoverIfMoved(backend, protocol, before, identity, ep.identities.active);
  }

  /** A known identity replaced by another, outside a split brain: a failover faster than down detection (onFailover). */
  private failoverIfMoved(backend: string, protocol: RouteProtocol, from: string | undefined, to: string | undefined, splitBrain: boolean): void {
    if (from === undefined || to === undefined || to === '' || to === from || splitBrain) return;
    try { this.opts.onFailover?.(backend, protocol, to); } catch (e) { this.logError('on_failover', e); }
  }

  private splitBrainEvent(ep: Endpoint, ev: SplitBrainEvent): void {
    if (!ev) return;
    ep.splitBrain = ev.kind === 'entered';
    const now = this.clock.now();
    const policy = this.config.health.splitBrain.policy;
    const reason = ev.kind === 'entered'
      ? `identities alternate within ${this.config.health.splitBrain.windowMs} ms: ${ev.identities.join(' | ')}`
      : `one identity for ${this.config.health.splitBrain.stableMs} ms: ${ev.identity}`;
    backendSplitBrain.set({ backend: ep.backend }, this.endpointsOf(ep.backend).some((e) => e.splitBrain) ? 1 : 0);
    if (ev.kind === 'entered') this.log.error({ event: 'backend_split_brain', backend: ep.backend, protocol: ep.protocol, policy, reason }, `backend ${ep.backend} ${ep.protocol}: split brain (${policy === 'refuse' ? 'refusing logins' : 'alert only'})`);
    else this.log.warn({ event: 'backend_split_brain_cleared', backend: ep.backend, protocol: ep.protocol, reason }, `backend ${ep.backend} ${ep.protocol}: split brain over`);
    const [from, to] = ev.kind === 'entered' ? ['single_identity', 'split_brain'] : ['split_brain', 'single_identity'];
    void this.hooks?.fire({ instance: this.config.instanceName, backend: ep.backend, protocol: ep.protocol, from, to, reason, at: now });
    this.safeEmit('split-brain', { backend: ep.backend, protocol: ep.protocol, active: ep.splitBrain, reason });
  }

  /** Administrative drain on/off for every endpoint of a backend. False for a backend this monitor does not know. */
  setMaintenance(backend: string, enabled: boolean, reason?: string): boolean {
    if (!this.isConfigured(backend) && !this.endpointsOf(backend).length) return false;
    if (enabled) this.maintenance.add(backend); else this.maintenance.delete(backend);
    const now = this.clock.now();
    for (const ep of this.endpointsOf(backend)) this.apply(ep, ep.machine.setMaintenance(enabled, now, reason));
    this.refold(backend, now, reason ?? (enabled ? 'maintenance on' : 'maintenance off'));
    return true;
  }

  /** State of every known backend; pass session counts per backend to include them. */
  snapshot(sessionCounts?: Record<string, number>): BackendSnapshot[] {
    const names = new Set([...Object.keys(this.config.backends), ...[...this.endpoints.values()].map((e) => e.backend)]);
    return [...names].sort().map((backend) => {
      const f = this.fold(backend);
      const standby = this.config.backends[backend]?.standby;
      return {
        backend,
        state: f.state,
        since: iso(f.since),
        maintenance: this.maintenance.has(backend),
        ...(this.damper.isFlapping(backend) ? { flapping: true } : {}),
        ...(standby ? { standby } : {}),
        ...(sessionCounts ? { sessions: sessionCounts[backend] ?? 0 } : {}),
        endpoints: this.endpointsOf(backend).map((ep) => endpointSnapshot(ep)),
      };
    });
  }

  /** Worker role: adopt the primary's snapshot (no logs, metrics or hooks here; onBackendDown still fires). */
  applyState(snapshot: readonly BackendSnapshot[]): void {
    const now = this.clock.now();
    for (const b of snapshot) {
      if (b.maintenance) this.maintenance.add(b.backend); else this.maintenance.delete(b.backend);
      for (const e of b.endpoints) {
        const ep = this.endpoint(b.backend, e.protocol);
        const since = Date.parse(e.since);
        const failingSince = e.failingSince === undefined ? null : Date.parse(e.failingSince);
        const t = ep.machine.adopt(e.health, b.maintenance, Number.isFinite(since) ? since : now, now, { since: failingSince !== null && Number.isFinite(failingSince) ? failingSince : null, hung: e.hung === true });
        ep.splitBrain = e.splitBrain === true;
        // Workers see identities through the primary's probes: a changed one is a failover for their sessions too.
        this.failoverIfMoved(b.backend, e.protocol, ep.lastProbe?.identity, e.lastProbe?.identity, ep.splitBrain);
        if (e.lastProbe) {
          const { failure, ...rest } = e.lastProbe;
          ep.lastProbe = { backend: b.backend, protocol: e.protocol, ...rest, at: Date.parse(e.lastProbe.at), ...(failure ? { failure: failure as NonNullable<ProbeResult['failure']> } : {}) };
        }
        if (t) this.emitEndpoint({ backend: b.backend, protocol: e.protocol, ...t }, false);
      }
      this.refold(b.backend, now, 'state from primary', false);
    }
  }

  /** Effective state of one endpoint (unknown when never seen). */
  stateOf(backend: string, protocol: RouteProtocol): EffectiveState {
    return this.endpoints.get(targetKey(backend, protocol))?.machine.state ?? (this.maintenance.has(backend) ? 'maintenance' : 'unknown');
  }

  private record(backend: string, protocol: RouteProtocol, outcome: Outcome): void {
    const ep = this.endpoint(backend, protocol);
    for (const ev of this.damper.settle(this.clock.now())) this.fireHook(ev);
    const t = ep.machine.record(outcome, this.clock.now());
    this.apply(ep, t);
    if (t) this.refold(backend, t.at, `${protocol}: ${t.reason}`);
    if (t && (t.to === 'suspect' || t.to === 'down')) this.prober?.hurry(backend, protocol);
  }

  private apply(ep: Endpoint, t: ReturnType<BackendState['record']>): void {
    if (t) this.emitEndpoint({ backend: ep.backend, protocol: ep.protocol, ...t }, this.role === 'primary');
  }

  private emitEndpoint(t: EndpointTransition, sideEffects: boolean): void {
    if (sideEffects) {
      backendUp.set({ backend: t.backend, protocol: t.protocol }, upValue(t.to));
      const level = t.to === 'down' ? 'warn' : 'info';
      this.log[level]({ event: 'backend_endpoint_state', backend: t.backend, protocol: t.protocol, from: t.from, to: t.to, reason: t.reason }, `backend ${t.backend} ${t.protocol} ${t.from} -> ${t.to}`);
    }
    this.safeEmit('transition', t);
    if (t.to === 'down' && this.opts.onBackendDown) {
      try { this.opts.onBackendDown(t.backend, t.protocol); } catch (e) { this.logError('on_backend_down', e); }
    }
    const standby = this.config.backends[t.backend]?.standby;
    if (t.from === 'down' && t.to !== 'down' && standby && this.opts.onFailback) {
      try { this.opts.onFailback(t.backend, standby, t.protocol); } catch (e) { this.logError('on_failback', e); }
    }
  }

  private refold(backend: string, now: number, reason: string, sideEffects = this.role === 'primary'): void {
    const prev = this.folded.get(backend);
    const next = foldStates(this.endpointsOf(backend).map((e) => e.machine.state).concat(this.maintenance.has(backend) ? ['maintenance'] : []));
    if (prev && prev.state === next) return;
    this.folded.set(backend, { state: next, since: now });
    if (!prev) return;
    const t: BackendTransition = { backend, from: prev.state, to: next, at: now, reason };
    if (sideEffects) {
      backendStateTransitionsTotal.inc({ backend, from: t.from, to: t.to });
      this.log[next === 'down' ? 'error' : 'warn']({ event: 'backend_state', backend, from: t.from, to: t.to, reason }, `backend ${backend} ${t.from} -> ${t.to}`);
      for (const ev of this.damper.observe(t)) this.fireHook(ev);
    }
    this.safeEmit('backend', t);
  }

  /** Run the hooks for one damped event; the start and end of a flap are also logged and shown by the gauge. */
  private fireHook(ev: { backend: string; from: string; to: string; at: number; reason: string }): void {
    if (ev.to === 'flapping' || ev.from === 'flapping') {
      backendFlapping.set({ backend: ev.backend }, ev.to === 'flapping' ? 1 : 0);
      this.log.warn({ event: ev.to === 'flapping' ? 'backend_flapping' : 'backend_flapping_over', backend: ev.backend, reason: ev.reason }, `backend ${ev.backend}: ${ev.to === 'flapping' ? 'flapping, hooks paused' : `stable again (${ev.to})`}`);
    }
    void this.hooks?.fire({ instance: this.config.instanceName, ...ev });
  }

  private fold(backend: string, now = this.clock.now()): { state: EffectiveState; since: number } {
    return this.folded.get(backend) ?? { state: this.maintenance.has(backend) ? 'maintenance' : 'unknown', since: now };
  }

  private endpoint(backend: string, protocol: RouteProtocol): Endpoint {
    const key = targetKey(backend, protocol);
    let ep = this.endpoints.get(key);
    if (!ep) {
      const h = this.config.health;
      const now = this.clock.now();
      const machine = new BackendState({ rise: h.rise, fall: h.fall, trickleIntervalMs: h.trickleIntervalMs }, now);
      if (this.maintenance.has(backend)) machine.setMaintenance(true, now);
      ep = { backend, protocol, machine, identities: new IdentityTracker(h.splitBrain), splitBrain: false };
      this.endpoints.set(key, ep);
      if (this.role === 'primary') backendUp.set({ backend, protocol }, upValue(machine.state));
      if (!this.folded.has(backend)) this.folded.set(backend, { state: machine.state, since: now });
    }
    return ep;
  }

  private endpointsOf(backend: string): Endpoint[] {
    return [...this.endpoints.values()].filter((e) => e.backend === backend);
  }

  private isConfigured(backend: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.config.backends, backend);
  }

  private ensureConfigured(): void {
    for (const r of probeTargets(this.config)) this.endpoint(r.backend, r.protocol);
    const now = this.clock.now();
    for (const name of Object.keys(this.config.backends)) if (!this.folded.has(name)) this.folded.set(name, this.fold(name, now));
  }

  private safeEmit(event: string, payload: unknown): void {
    try { this.emit(event, payload); } catch (e) { this.logError(`${event}_listener`, e); }
  }

  private logError(where: string, e: unknown): void {
    this.log.error({ event: 'health_callback_error', where, err: e instanceof Error ? e.message : String(e) }, 'health callback threw');
  }
}

function upValue(s: EffectiveState): number {
  return s === 'down' || s === 'maintenance' ? 0 : 1;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function endpointSnapshot(ep: Endpoint): EndpointSnapshot {
  const v = ep.machine.view();
  const p = ep.lastProbe;
  return {
    protocol: ep.protocol,
    state: v.state,
    health: v.health,
    since: iso(v.since),
    ...(v.failingSince !== null ? { failingSince: iso(v.failingSince) } : {}),
    ...(v.hung ? { hung: true } : {}),
    ...(ep.splitBrain ? { splitBrain: true } : {}),
    ...(p ? { lastProbe: { ok: p.ok, at: iso(p.at), latencyMs: p.latencyMs, ...(p.identity !== undefined ? { identity: p.identity } : {}), ...(p.failure ? { failure: p.failure } : {}), ...(p.error ? { error: p.error } : {}) } } : {}),
  };
}
