// Owns the single-process wiring of the admin callbacks: AdminDeps served from this process's HealthMonitor, SessionRegistry and registry.
// Must not be used by a cluster primary for sessions (they live in workers: route those callbacks over IPC instead).
import { ProxyError } from '../errors.js';
import { registry as metricsRegistry } from '../metrics.js';
import type { SessionRegistry } from '../proxy/sessions.js';
import type { HealthMonitor } from '../health/health.js';
import type { AdminDeps, Readiness } from './http.js';
import { countSessionsByBackend } from './kick.js';
import type { TraceControl } from '../trace/control.js';

export interface LocalAdminOptions {
  monitor: HealthMonitor;
  sessions: SessionRegistry;
  readiness(): Readiness | Promise<Readiness>;
  /** Defaults to this process's metrics registry. */
  metrics?(): Promise<{ contentType: string; body: string }>;
  /** The goodbye sessions get when an operator kicks them. */
  kickError?(): ProxyError;
  /** Trace on demand for this process's sessions. */
  trace?: TraceControl;
}

function traceDeps(t: TraceControl | undefined): Pick<AdminDeps, 'setTrace' | 'listTraces'> {
  return t ? { setTrace: (user, minutes) => t.set(user, minutes), listTraces: async () => t.list() } : {};
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
    kickSessions: async (filter) => ({ kicked: o.sessions.kick(filter, o.kickError?.() ?? new ProxyError('ADMIN_KICK')) }),
    ...traceDeps(o.trace),
  };
}
