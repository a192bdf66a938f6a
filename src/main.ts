#!/usr/bin/env node
// Owns the command line: start, check-config, lookup, status, sessions, routes invalidate; and process signals (SIGHUP reload, SIGTERM drain).
// Must not hold protocol or health logic; it loads config and composes the modules (see server.ts, runtime.ts).
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { loadConfig, ConfigError } from './config/load.js';
import { createLogger, silentLogger } from './log.js';
import { createDirectory } from './directory/create.js';
import { isProxyError } from './errors.js';
import { runInstance } from './runtime.js';
import { reportTlsFiles } from './tls/check.js';

const USAGE = `usage: mailproxy <command> [options]
  start -c FILE           run the proxy
  check-config -c FILE    validate a configuration file and exit
  lookup USER -c FILE     show what the directory says about USER (no password)
  status -c FILE          print the backend table; exit 0 all up, 2 any down, 3 unknown
  sessions USER -c FILE   list USER's sessions (on every instance of the tier, with tier:)
  routes invalidate USER -c FILE   drop USER's cached route and verdict and close their sessions (tier-wide)
  where USER -c FILE      which backend (pool member) serves USER now and why, from the running instance`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } });
  const [command, ...rest] = positionals;
  if (values.help || !command) { console.log(USAGE); return command ? 0 : 64; }
  if (!['check-config', 'lookup', 'status', 'start', 'sessions', 'routes', 'where'].includes(command)) { console.error(`unknown command '${command}'\n${USAGE}`); return 64; }
  const file = values.config ?? process.env['MAILPROXY_CONFIG'];
  if (!file) { console.error(`${command} needs -c FILE (or MAILPROXY_CONFIG)\n${USAGE}`); return 64; }
  const config = () => {
    try { return loadConfig(file); } catch (e) {
      if (e instanceof ConfigError) { console.error(`${e.message}\n  ${e.problems.join('\n  ')}`); process.exit(78); }
      throw e;
    }
  };
  switch (command) {
    case 'check-config': {
      const c = config();
      if (!reportTlsFiles(c, (l) => console.error(l))) return 78;
      console.log(`${file}: OK (${c.listeners.length} listeners, directory ${c.directory.type}, ${Object.keys(c.backends).length} backends)`);
      return 0;
    }
    case 'lookup': {
      const user = rest[0];
      if (!user) { console.error('lookup needs a USER'); return 64; }
      const dir = createDirectory(config(), silentLogger);
      try {
        const account = await dir.lookup(user);
        console.log(JSON.stringify(account ? { found: true, ...account } : { found: false, user }, null, 2));
        return account ? 0 : 1;
      } catch (e) {
        console.error(`lookup failed: ${isProxyError(e) ? `${e.code} ${e.detail ?? ''}` : (e as Error).message}`);
        return 75;
      } finally { await dir.close(); }
    }
    case 'status': {
      const { runStatus } = await import('./ops/status.js');
      return runStatus(config());
    }
    case 'where': {
      const user = rest[0];
      if (!user) { console.error('where needs a USER'); return 64; }
      const c = config();
      if (!c.admin.enabled) { console.error('where asks the running instance: admin.enabled is false in this configuration'); return 3; }
      const [{ runWhere }, { adminBaseUrl }] = await Promise.all([import('./pools/where.js'), import('./ops/status.js')]);
      return runWhere(user, { baseUrl: adminBaseUrl(c.admin), ...(c.admin.token ? { token: c.admin.token } : {}) });
    }
    case 'sessions': {
      if (!rest[0]) { console.error('sessions needs a USER'); return 64; }
      const { runSessions } = await import('./tier/cli.js');
      return runSessions(config(), rest[0]);
    }
    case 'routes': {
      if (rest[0] !== 'invalidate' || !rest[1]) { console.error('usage: mailproxy routes invalidate USER -c FILE'); return 64; }
      const { runInvalidate } = await import('./tier/cli.js');
      return runInvalidate(config(), rest[1]);
    }
    case 'start': {
      // node:cluster runs this same command line in each worker; a worker takes its config from the primary over IPC.
      if (cluster.isWorker) {
        const { runWorker } = await import('./cluster.js');
        await runWorker();
        return -1;
      }
      const c = config();
      if (!reportTlsFiles(c, (l) => console.error(l))) return 78;
      await runInstance(c, file, createLogger(c.log.level));
      return -1; // keep running
    }
    default:
      console.error(`unknown command '${command}'\n${USAGE}`);
      return 64;
  }
}

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exitCode = code; }, (e) => {
  console.error(`mailproxy: ${(e as Error).message}`);
  process.exit(1);
});
