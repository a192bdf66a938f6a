// Owns the single-process wiring of the admin callbacks: AdminDeps served from this process's HealthMonitor, SessionRegistry and registry.
// Must not be used by a cluster primary for sessions (they live in workers: route those callbacks over IPC instead).
import { ProxyError } from '../errors.js';
import { registry as metricsRegistry } from '../metrics.js';
import type { SessionRegistry } from '../proxy/sessions.js';
import type { HealthMonitor } from '../health/health.js';
import type { AdminDeps, Readiness } from './http.js';
import { countSessionsByBackend } from './kick.js';

export interface LocalAdminOptions {
  monitor: HealthMonitor;
  sessions: SessionRegistry;
  readiness(): Readiness | Promise<Readiness>;
  /** Defaults to this process's metrics registry. */
  metrics?(): Promise<{ contentType: string; body: string }>;
  /** The goodbye sessions get when an operator kicks them. */
  kickError?(): ProxyError;
}

export function localAdminDeps(o: LocalAdminOptions): AdminDeps {
  const snapshot = () => o.monitor.snapshot(countSessionsByBackend(o.sessions));
  return {
    readiness: () => o.readiness(),
    metrics: o.metrics ?? (async () => ({ contentType: metricsRegistry.contentType, body: await metricsRegistry.metrics() })),
    backends: async () => snapshot(),
    setMaintenance: async (backend, enabled) => {
      if (!o.monitor.setMaintenance(backend, enabled, `maintenance ${enabled ? 'on' : 'off'} (admin API)`)) return undefined;
      return snapshot().find((b) => b.backend === backend);
    },
    listSessions: async (filter) => o.sessions.list(filter).map((s) => s.info),
    kickSessions: async (filter) => o.sessions.kick(filter, o.kickError?.() ?? new ProxyError('SHUTDOWN', 'kicked by operator')),
  };
}
