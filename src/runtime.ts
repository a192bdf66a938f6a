// Owns the lifecycle of a started proxy process: signals (SIGHUP reload, SIGTERM drain), and the choice of single or cluster mode.
// Must not parse protocols; config files are read through loadConfig only (cluster.ts runs the multi-process variant).
import type { Logger } from './log.js';
import type { Config } from './config/schema.js';
import { App } from './app.js';
import { drainApp, exitSoon, resolveWorkers, restartOnlyChanges, tryReload } from './lifecycle.js';

export async function runSingle(config: Config, file: string, logger: Logger): Promise<App> {
  const app = new App(config, { logger });
  await app.start();
  for (const b of app.instance.bound) logger.info({ protocol: b.config.protocol, address: b.address, port: b.port, tls: b.config.tls }, 'listening');

  let stopping = false;
  process.on('SIGHUP', () => {
    if (stopping) return;
    const next = tryReload(file, logger);
    if (!next) return;
    restartOnlyChanges(app.config, next, logger);
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
