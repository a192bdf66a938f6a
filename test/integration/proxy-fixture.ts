// Owns running a mailproxy Instance in-process in front of the test world, with a config built from the world and captured logs.
// Must not start world components (the harness does) nor assert anything.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { World } from './harness/world.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import type { Instance } from '../../src/server.js';
import { App, type AppOptions } from '../../src/app.js';

export type RawConfig = Record<string, unknown>;

/** The world as a mailproxy config: LDAP directory, backend-a/b trusting the proxy, backend-dead on a closed port. */
export function worldConfig(world: World, extra: (raw: RawConfig) => void = () => undefined): Config {
  return configSchema.parse(worldRawConfig(world, extra));
}

/** The same, before validation (the demo writes it out as YAML). */
export function worldRawConfig(world: World, extra: (raw: RawConfig) => void = () => undefined): RawConfig {
  const { a, b } = world.backends;
  const backend = (d: World['backends']['a']) => ({
    host: '127.0.0.1',
    imap: { port: d.ports.imap, tls: 'none' },
    pop3: { port: d.ports.pop3, tls: 'none' },
    submission: { port: d.ports.submission, tls: 'none' },
    lmtp: { port: d.ports.lmtp, tls: 'none' },
    tlsVerify: false,
    trustsProxy: true,
  });
  const raw: RawConfig = {
    instanceName: 'test',
    log: { level: 'debug' },
    tls: { certFile: world.tls.certPath, keyFile: world.tls.keyPath },
    listeners: [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit' },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'implicit' },
    ],
    imap: { requireTlsForAuth: false, limits: { authFailureDelayMs: 300 } },
    pop3: { requireTlsForAuth: false, limits: { authFailureDelayMs: 300 } },
    directory: {
      type: 'ldap',
      ldap: { urls: [world.ldap.url], bindDN: world.ldap.bindDN, bindPassword: world.ldap.bindPassword, baseDN: world.ldap.baseDN, timeoutMs: 2000, connectTimeoutMs: 1000 },
      cache: { ttlMs: 1000, negativeTtlMs: 500 },
    },
    backendLogin: { backendLoginBudgetMs: 5000, connectTimeoutMs: 1000 },
    backends: {
      'backend-a': backend(a),
      'backend-b': backend(b),
      'backend-dead': { host: '127.0.0.1', imap: { port: world.deadPort }, pop3: { port: world.deadPort }, submission: { port: world.deadPort }, lmtp: { port: world.deadPort } },
    },
    health: { enabled: false },
    admin: { enabled: false },
  };
  extra(raw);
  return raw;
}

export interface RunningProxy {
  app: App;
  instance: Instance;
  config: Config;
  /** Port of the first listener for (protocol, tls). */
  port(protocol: string, tls: 'starttls' | 'implicit' | 'none'): number;
  /** Every log line so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Raw log text (to prove no password ever appears). */
  logText(): string;
  stop(): Promise<void>;
}

export async function startProxy(config: Config, opts: Omit<AppOptions, 'logger'> = {}): Promise<RunningProxy> {
  const chunks: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = chunk.toString('utf8');
      chunks.push(text);
      for (const line of text.split('\n')) if (line.trim()) { try { logs.push(JSON.parse(line) as Record<string, unknown>); } catch { /* partial */ } }
      cb();
    },
  });
  const logger = pino({ level: config.log.level }, sink);
  const app = new App(config, { ...opts, logger });
  await app.start();
  const instance = app.instance;
  const bound = instance.bound;
  return {
    app,
    instance,
    config,
    port(protocol, tls) {
      const b = bound.find((x) => x.config.protocol === protocol && x.config.tls === tls);
      if (!b) throw new Error(`no ${protocol}/${tls} listener`);
      return b.port;
    },
    logs,
    logText: () => chunks.join(''),
    async stop() { await app.close(); },
  };
}
