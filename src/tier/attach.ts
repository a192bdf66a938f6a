// Owns connecting one process's parts to the tier: the gate overlay from the shared backend view, tier actions carried
// out locally, the monitor as evidence source, admin callbacks that act tier-wide. Must not talk to Redis itself.
import type { Config } from '../config/schema.js';
import { routeForBackend, type Route, type RouteProtocol } from '../directory/backends.js';
import { ProxyError } from '../errors.js';
import type { BackendGate } from '../health/gate.js';
import type { BackendSnapshot, EndpointTransition } from '../health/health.js';
import type { AdminDeps, SessionFilter } from '../ops/http.js';
import type { LocalEvidence, TierViewSnapshot } from './backend-view.js';
import type { TierAction } from './broadcast.js';
import { kickFilter, kickTarget } from './kick-replay.js';
import type { Tier } from './tier.js';
import type { Logger } from '../log.js';
import { poolSpec, type MemberState } from '../directory/pool-route.js';
import { PoolConflictSweep } from '../pools/conflict-sweep.js';

/** What the tier needs from the local health monitor. */
export interface MonitorLike {
  snapshot(): BackendSnapshot[];
  setMaintenance(backend: string, enabled: boolean, reason?: string): boolean;
  stateOf(backend: string, protocol: RouteProtocol): string;
  on(event: 'transition', fn: (t: EndpointTransition) => void): unknown;
}

/** What a tier action does here (single process: directly; cluster primary: over IPC to the workers). */
export interface LocalActions {
  kick(filter: SessionFilter): Promise<number>;
  invalidateRoute(user: string): Promise<number>;
  /** The tier holds an endpoint down that this instance did not see down itself: say goodbye to its spliced sessions. */
  kickBackend(backend: string, protocol: string): void;
  /** The set of endpoints the tier holds down changed (a cluster primary passes it on to its workers). */
  verdictsChanged?(down: readonly string[]): void;
  /** The shared view changed or became (un)available: pool members take their conditions from it. */
  viewChanged?(view: TierViewSnapshot): void;
}

/** Gate that also fails fast (or uses the standby) for an endpoint the tier holds down. */
export function tierGate(inner: BackendGate, isDown: (backend: string, protocol: string) => boolean, config: () => Pick<Config, 'backends'>, stateOf: (backend: string, protocol: RouteProtocol) => string): BackendGate {
  return {
    admit(route: Route): Route {
      const r = inner.admit(route);
      if (!isDown(r.backend, r.protocol)) return r;
      if (r.standby && !isDown(r.standby, r.protocol)) {
        const sb = stateOf(r.standby, r.protocol);
        if (sb === 'up' || sb === 'suspect') return routeForBackend(config(), r.standby, r.protocol);
      }
      throw new ProxyError('BACKEND_DOWN', `${r.backend} ${r.protocol} (tier verdict)`);
    },
    report: (route, outcome) => inner.report(route, outcome),
  };
}

/** This instance's probe evidence and maintenance flags, read from its monitor. */
export function monitorEvidence(monitor: Pick<MonitorLike, 'snapshot'>): { evidence(): LocalEvidence[]; maintenance(): string[] } {
  return {
    evidence: () => monitor.snapshot().flatMap((b) => b.endpoints.map((e) => ({
      backend: b.backend,
      protocol: e.protocol,
      health: e.health,
      at: e.lastProbe ? Date.parse(e.lastProbe.at) : undefined,
    }))),
    maintenance: () => monitor.snapshot().filter((b) => b.maintenance).map((b) => b.backend),
  };
}

/**
 * Wire the instance-role tier to this process: backend view from and into the monitor, actions from other instances
 * carried out here. Call before tier.start().
 */
export function attachInstance(tier: Tier, monitor: MonitorLike, actions: LocalActions): void {
  const view = tier.attachBackendView(monitorEvidence(monitor), {
    verdict: (backend, protocol, down) => {
      actions.verdictsChanged?.(view.downKeys());
      if (down && monitor.stateOf(backend, protocol as RouteProtocol) !== 'down') actions.kickBackend(backend, protocol);
    },
    maintenance: (backend, enabled) => { monitor.setMaintenance(backend, enabled, `maintenance ${enabled ? 'on' : 'off'} (tier)`); },
    changed: (snapshot) => actions.viewChanged?.(snapshot),
  });
  // A local change to or from down is published at once and the others re-read the view now (well within 1 s).
  monitor.on('transition', (t) => { if (t.to === 'down' || t.from === 'down') void view.publish(true); });
  // A kick (live or read late from the recent-kicks stream) closes only sessions that started before it, once.
  tier.kicks.onKick((k) => actions.kick(kickFilter(k)));
  tier.broadcast.onAction((a: TierAction, from: string) => void apply(a, from));
  async function apply(a: TierAction, from: string): Promise<void> {
    switch (a.type) {
      case 'kick': if (a.user || a.backend) await tier.kicks.receive(a, from); break;
      case 'maintenance': monitor.setMaintenance(a.backend, a.enabled, `maintenance ${a.enabled ? 'on' : 'off'} (tier)`); break;
      case 'invalidate': await actions.invalidateRoute(a.user); await actions.kick({ user: a.user }); break;
      case 'view': break;
    }
  }
}

/** Route invalidation as the admin API and CLI see it. */
export interface InvalidateResult { user: string; dropped: number; kicked: number; tier: boolean }

/**
 * Admin callbacks acting on the whole tier: sessions of a user listed from every instance, kicks, maintenance and route
 * invalidation done here at once and broadcast to the others (the answer says whether the broadcast went out).
 */
export function tierAdminDeps(inner: AdminDeps, tier: Tier, actions: LocalActions): AdminDeps {
  return {
    ...inner,
    listSessions: async (filter) => {
      if (!filter.user || filter.backend) return inner.listSessions(filter);
      const r = await tier.sessions.list(filter.user);
      if (r.source === 'local') return inner.listSessions(filter);
      return r.sessions.map((s) => ({ instance: s.instance, id: s.id, protocol: s.protocol, client: s.client, user: s.user, backend: s.backend, phase: 'relay' as const, startedAt: Date.parse(s.since), since: s.since }));
    },
    kickSessions: async (filter) => {
      const answer = await inner.kickSessions(filter);
      if (!filter.user && !filter.backend) return answer;
      const sent = await tier.kicks.issue(kickTarget(filter));
      if (sent === 'sent') return { ...answer, tier: sent };
      const c = tier.client.config.kicks;
      return { ...answer, tier: sent, message: `closed ${answer.kicked} sessions here; Redis is unreachable, so the kick is pending tier-wide: it goes to the other instances when Redis answers (kept up to ${Math.round(c.maxAgeMs / 1000)} s) and closes their sessions that started before it` };
    },
    setMaintenance: async (backend, enabled) => {
      const r = await inner.setMaintenance(backend, enabled);
      if (!r || !tier.backendView) return r;
      const sent = await tier.backendView.setMaintenance(backend, enabled);
      if (sent === 'sent') return { ...r, tier: sent };
      return { ...r, tier: sent, message: `maintenance ${enabled ? 'on' : 'off'} for ${backend} is applied here; Redis is unreachable, so it is pending tier-wide: it is written when Redis answers (logged as tier_maintenance_written), unless a newer switch was made through another instance meanwhile (tier_maintenance_outvoted)` };
    },
    invalidateRoute: async (user) => {
      const dropped = await actions.invalidateRoute(user);
      const kicked = await actions.kick({ user });
      const sent = await tier.broadcast.send({ type: 'invalidate', user });
      return { user, dropped, kicked, tier: sent };
    },
  };
}

/**
 * The tier-wide pool conflict sweep (config tier.poolSweep): conflicting sessions are closed here at once and on the other
 * instances through the kick broadcast (the protocol's goodbye), like an operator's kick of that user on that member.
 * Undefined when the sweep is off.
 */
export function poolConflictSweep(tier: Tier, config: () => Pick<Config, 'pools'>, memberStates: (pool: string) => ReadonlyMap<string, MemberState>, actions: LocalActions, logger: Logger): PoolConflictSweep | undefined {
  const c = tier.client.config.poolSweep;
  if (c.intervalMs <= 0) return undefined;
  return new PoolConflictSweep({
    registry: tier.sessions,
    leaseKey: tier.keys.poolSweepLease,
    pools: () => Object.keys(config().pools).map((name) => poolSpec(config(), name)!),
    statesOf: memberStates,
    close: async (user, member) => {
      await actions.kick({ user, backend: member });
      await tier.kicks.issue({ user, backend: member });
    },
    intervalMs: c.intervalMs,
    keysPerRound: c.keysPerRound,
    logger: logger.child({ module: 'pools' }),
  });
}
