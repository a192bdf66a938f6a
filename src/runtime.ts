// Owns the lifecycle of a started proxy process: signals (SIGHUP reload, SIGTERM drain), readiness and shutdown.
// Must not parse protocols or config files itself beyond calling loadConfig on reload.
import type { Logger } from './log.js';
import type { Config } from './config/schema.js';
import { loadConfig, ConfigError } from './config/load.js';
import { Instance } from './server.js';

export async function runInstance(config: Config, file: string, logger: Logger): Promise<Instance> {
  const instance = new Instance(config, { logger });
  const bound = await instance.start();
  for (const b of bound) logger.info({ protocol: b.config.protocol, address: b.address, port: b.port, tls: b.config.tls }, 'listening');

  process.on('SIGHUP', () => {
    try {
      const next = loadConfig(file);
      instance.reload(next).then(() => logger.info({ file }, 'configuration reloaded'), (e) => logger.error({ err: (e as Error).message }, 'reload failed; old configuration stays'));
    } catch (e) {
      const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
      logger.error({ file, problems }, 'new configuration refused; old configuration stays');
    }
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const deadline = instance.current.shutdown.drainDeadlineMs;
    logger.info({ signal, drainDeadlineMs: deadline, sessions: instance.sessions.size }, 'draining');
    await instance.stopListening();
    const t0 = Date.now();
    while (instance.sessions.size > 0 && Date.now() - t0 < deadline) await new Promise((r) => setTimeout(r, 200));
    await instance.close();
    logger.info('stopped');
    logger.flush?.();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  return instance;
}
