// Owns the lifecycle of a started proxy process: signals (SIGHUP reload, SIGTERM drain), and the choice of single or cluster mode.
// Must not parse protocols; config files are read through loadConfig only (cluster.ts runs the multi-process variant).
import { availableParallelism } from 'node:os';
import type { Logger } from './log.js';
import type { Config } from './config/schema.js';
import { loadConfig, ConfigError } from './config/load.js';
import { loadTlsMaterial } from './tls/certificates.js';
import { App } from './app.js';

/** `workers: auto` is one worker per CPU the process may use. */
export function resolveWorkers(config: Pick<Config, 'workers'>): number {
  return config.workers === 'auto' ? Math.max(1, availableParallelism()) : config.workers;
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

export async function runSingle(config: Config, file: string, logger: Logger): Promise<App> {
  const app = new App(config, { logger });
  await app.start();
  for (const b of app.instance.bound) logger.info({ protocol: b.config.protocol, address: b.address, port: b.port, tls: b.config.tls }, 'listening');

  let stopping = false;
  process.on('SIGHUP', () => {
    if (stopping) return;
    const next = tryReload(file, logger);
    if (!next) return;
    app.reload(next).then(
      () => logger.info({ event: 'reloaded', file }, 'configuration reloaded'),
      (e) => logger.error({ event: 'reload_failed', err: (e as Error).message }, 'reload failed; old configuration stays'),
    );
  });
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    drainApp(app, logger, signal).then(() => exitSoon(logger, 0), (e) => {
      logger.error({ err: (e as Error).message }, 'shutdown failed');
      exitSoon(logger, 1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return app;
}

/** `workers` resolved to 1: this process serves; more: this process becomes the cluster primary (cluster.ts). */
export async function runInstance(config: Config, file: string, logger: Logger): Promise<void> {
  const workers = resolveWorkers(config);
  if (workers <= 1) {
    await runSingle(config, file, logger);
    return;
  }
  const { runPrimary } = await import('./cluster.js');
  await runPrimary(config, file, logger, workers);
}
