// Owns the one operator start-up used by single-process and cluster mode: admin HTTP and agent-check listeners, and their shutdown.
// Must not decide what the callbacks answer (App serves them locally, the cluster primary over IPC) nor start health probing.
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import { startAdminServer, type AdminDeps, type Readiness } from './http.js';
import { startAgentCheck } from './agent-check.js';
import { startMetricsListener } from './metrics-listener.js';

export interface Ops {
  admin: { port: number; close(): Promise<void> } | undefined;
  agent: { port: number; close(): Promise<void> } | undefined;
  /** The metrics-only listener (admin.metrics), without the token. */
  metrics: { port: number; close(): Promise<void> } | undefined;
  close(): Promise<void>;
}

/** Admin HTTP (when admin.enabled), agent-check (when admin.agentCheckPort is set) and metrics-only (admin.metrics), per `config.admin`. */
export async function startOps(opts: { config: Pick<Config, 'admin'>; logger: Logger; deps: AdminDeps; readiness: () => Readiness }): Promise<Ops> {
  const c = opts.config.admin;
  let admin: Ops['admin'];
  let agent: Ops['agent'];
  let metrics: Ops['metrics'];
  const close = async (): Promise<void> => { await Promise.all([admin?.close(), agent?.close(), metrics?.close()]); };
  try {
    if (c.enabled) {
      admin = await startAdminServer({ deps: opts.deps, logger: opts.logger.child({ module: 'admin' }), address: c.address, port: c.port, ...(c.token ? { token: c.token } : {}) });
      opts.logger.info({ address: c.address, port: admin.port }, 'admin HTTP listening');
    }
    if (c.agentCheckPort !== undefined) {
      agent = await startAgentCheck({ address: c.address, port: c.agentCheckPort, readiness: opts.readiness, logger: opts.logger });
      opts.logger.info({ address: c.address, port: agent.port }, 'agent-check listening');
    }
    if (c.metrics) {
      metrics = await startMetricsListener({ address: c.metrics.address, port: c.metrics.port, metrics: () => opts.deps.metrics(), logger: opts.logger.child({ module: 'metrics-http' }) });
      opts.logger.info({ address: c.metrics.address, port: metrics.port }, 'metrics HTTP listening (no token: /metrics and /healthz only)');
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { admin, agent, metrics, close };
}
