#!/usr/bin/env node
// Owns the command line: start, check-config, lookup, status, schema, trace, sessions, kick, routes invalidate, where; and process signals.
// Must not hold protocol or health logic; it loads config and composes the modules (see server.ts, runtime.ts).
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { loadConfig, ConfigError } from './config/load.js';
import { checkConfigFile } from './config/check.js';
import { USAGE, packageVersion } from './cli-usage.js';
import { createLogger, silentLogger } from './log.js';
import { isProxyError } from './errors.js';
import { reportTlsFiles } from './tls/check.js';

const COMMANDS = ['check-config', 'lookup', 'status', 'start', 'schema', 'trace', 'sessions', 'kick', 'routes', 'where'];

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'V' }, minutes: { type: 'string', short: 'm' }, backend: { type: 'string', short: 'b' } } });
  } catch (e) { console.error(`mailproxy: ${(e as Error).message}\n${USAGE}`); return 64; }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help) { console.log(USAGE); return 0; }
  if (values.version) { console.log(`mailproxy ${packageVersion()}`); return 0; }
  if (!command) { console.error(USAGE); return 64; }
  if (!COMMANDS.includes(command)) { console.error(`unknown command '${command}'\n${USAGE}`); return 64; }
  if (command === 'schema') {
    const { configJsonSchema } = await import('./config/json-schema.js');
    console.log(JSON.stringify(configJsonSchema(), null, 2));
    return 0;
  }
  const file = values.config ?? process.env['MAILPROXY_CONFIG'];
  if (!file) { console.error(`${command} needs -c FILE (or MAILPROXY_CONFIG)\n${USAGE}`); return 64; }
  const config = () => {
    try { return loadConfig(file); } catch (e) {
      if (e instanceof ConfigError) { console.error(e.problems.join('\n')); process.exit(78); }
      throw e;
    }
  };
  switch (command) {
    case 'check-config': {
      const { config: c, problems } = await checkConfigFile(file);
      if (problems.length || !c) { console.error(problems.join('\n')); return 78; }
      if (!reportTlsFiles(c, (l) => console.error(l))) return 78;
      console.log(`${file}: OK (${c.listeners.length} listeners, directory ${c.directory.type}, ${Object.keys(c.backends).length} backends)`);
      return 0;
    }
    case 'lookup': {
      const user = rest[0];
      if (!user) { console.error('lookup needs a USER'); return 64; }
      const { createDirectory } = await import('./directory/create.js');
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
    case 'trace': {
      const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
      if (minutes !== undefined && !(Number.isFinite(minutes) && minutes >= 0)) { console.error(`--minutes must be a number of minutes, not '${values.minutes}'`); return 64; }
      const { runTrace } = await import('./trace/cli.js');
      return runTrace(config(), rest[0], minutes);
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
    case 'kick': {
      if (!rest[0] && !values.backend) { console.error('usage: mailproxy kick USER [--backend NAME] -c FILE (or kick --backend NAME)'); return 64; }
      const { runKick } = await import('./tier/cli.js');
      return runKick(config(), { ...(rest[0] ? { user: rest[0] } : {}), ...(values.backend ? { backend: values.backend } : {}) });
    }
    case 'routes': {
      if (rest[0] !== 'invalidate' || !rest[1]) { console.error('usage: mailproxy routes invalidate USER -c FILE'); return 64; }
      const { runInvalidate } = await import('./tier/cli.js');
      return runInvalidate(config(), rest[1]);
    }
    case 'start': {
      const heap = await import('./heap.js');
      heap.capYoungGeneration(cluster.isWorker ? heap.WORKER_NEW_SPACE_CAP : heap.NEW_SPACE_CAP);
      // node:cluster runs this same command line in each worker; a worker takes its config from the primary over IPC.
      if (cluster.isWorker) {
        const { runWorker } = await import('./cluster.js');
        await runWorker();
        return -1;
      }
      const c = config();
      if (!reportTlsFiles(c, (l) => console.error(l))) return 78;
      const { runInstance } = await import('./runtime.js');
      await runInstance(c, file, createLogger(c.log.level));
      return -1; // keep running
    }
    default:
      console.error(`unknown command '${command}'\n${USAGE}`);
      return 64;
  }
}

// A finished command exits once its output is flushed: an idle keep-alive socket (status asking the admin API) must not hold
// the process for the server's keep-alive timeout.
main(process.argv.slice(2)).then((code) => { if (code >= 0) { process.exitCode = code; process.stdout.write('', () => process.exit(code)); } }, (e) => {
  console.error(`mailproxy: ${(e as Error).message}`);
  process.exit(1);
});
