// Owns the process-lifecycle steps shared by single-process and cluster mode: worker count, config re-read on SIGHUP, drain, exit.
// Must not install signal handlers or fork (runtime.ts and cluster.ts do); it imports neither of them.
import { availableParallelism } from 'node:os';
import type { Logger } from './log.js';
import type { Config } from './config/schema.js';
import { loadConfig, ConfigError } from './config/load.js';
import { loadTlsMaterial } from './tls/certificates.js';
import type { App } from './app.js';

/** `workers: auto` is one worker per CPU the process may use. */
export function resolveWorkers(config: Pick<Config, 'workers'>): number {
  return config.workers === 'auto' ? Math.max(1, availableParallelism()) : config.workers;
}

/**
 * What a SIGHUP cannot apply to a running process (worker processes, the admin listener and the Redis connection are made
 * at start): the keys of `next` that differ from `prev` there, logged once as one warning so the operator knows to restart.
 */
export function restartOnlyChanges(prev: Config, next: Config, logger: Logger): string[] {
  const keys: string[] = [];
  if (resolveWorkers(prev) !== resolveWorkers(next)) keys.push('workers');
  for (const k of ['admin', 'tier'] as const) if (JSON.stringify(prev[k]) !== JSON.stringify(next[k])) keys.push(k);
  if (keys.length > 0) logger.warn({ event: 'reload_needs_restart', keys }, `changes of ${keys.join(', ')} take effect on restart`);
  return keys;
}

/**
 * Read and validate the file again, TLS material included (a cert that does not load must not half-apply);
 * on any problem keep the old configuration and log why.
 */
export function tryReload(file: string, logger: Logger): Config | undefined {
  try {
    const next = loadConfig(file);
    loadTlsMaterial(next);
    return next;
  } catch (e) {
    const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
    logger.error({ event: 'reload_refused', file, problems }, 'new configuration refused; old configuration stays');
    return undefined;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SIGTERM for one App: stop accepting at once (readiness false, agent says drain), let sessions run up to
 * shutdown.drainDeadlineMs, then give the rest the protocol's SHUTDOWN goodbye and close everything.
 */
export async function drainApp(app: App, logger: Logger, signal: string): Promise<void> {
  const deadline = app.config.shutdown.drainDeadlineMs;
  const t0 = Date.now();
  logger.info({ event: 'drain', signal, drainDeadlineMs: deadline, sessions: app.instance.sessions.size }, 'draining');
  await app.drain();
  for (let left = deadline; app.instance.sessions.size > 0 && left > 0; left = deadline - (Date.now() - t0)) await sleep(Math.min(100, left));
  const remaining = app.instance.sessions.size;
  // A client that never reads could hold a goodbye back; the process still ends.
  const closed = await Promise.race([app.close().then(() => true), sleep(5000).then(() => false)]);
  logger.info({ event: 'stopped', signal, drainMs: Date.now() - t0, closedAtDeadline: remaining, ...(closed ? {} : { closeTimedOut: true }) }, 'stopped');
}

/** Let the logger flush, then leave. */
export function exitSoon(logger: Logger, code: number): void {
  process.exitCode = code;
  logger.flush?.();
  setTimeout(() => process.exit(code), 100).unref();
}

