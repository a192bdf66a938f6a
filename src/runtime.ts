// Owns the lifecycle of a started proxy process: signals (SIGHUP reload, SIGTERM drain), and the choice of single or cluster mode.
// Must not parse protocols; config files are read through loadConfig only.
import type { Logger } from './log.js';
import type { Config } from './config/schema.js';
import { loadConfig, ConfigError } from './config/load.js';
import { App } from './app.js';

/** Validate the file again; on any problem keep the old configuration and log why. */
export function tryReload(file: string, logger: Logger): Config | undefined {
  try {
    return loadConfig(file);
  } catch (e) {
    const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
    logger.error({ file, problems }, 'new configuration refused; old configuration stays');
    return undefined;
  }
}

export async function runSingle(config: Config, file: string, logger: Logger): Promise<App> {
  const app = new App(config, { logger });
  await app.start();
  for (const b of app.instance.bound) logger.info({ protocol: b.config.protocol, address: b.address, port: b.port, tls: b.config.tls }, 'listening');

  process.on('SIGHUP', () => {
    const next = tryReload(file, logger);
    if (!next) return;
    app.reload(next).then(() => logger.info({ file }, 'configuration reloaded'), (e) => logger.error({ err: (e as Error).message }, 'reload failed; old configuration stays'));
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const deadline = app.config.shutdown.drainDeadlineMs;
    logger.info({ signal, drainDeadlineMs: deadline, sessions: app.instance.sessions.size }, 'draining');
    await app.drain();
    const t0 = Date.now();
    while (app.instance.sessions.size > 0 && Date.now() - t0 < deadline) await new Promise((r) => setTimeout(r, 200));
    await app.close();
    logger.info({ signal }, 'stopped');
    logger.flush?.();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  return app;
}

export async function runInstance(config: Config, file: string, logger: Logger): Promise<void> {
  await runSingle(config, file, logger);
}
