// Owns running a mailproxy Instance (or one service on the real Listener) in-process in front of the test world, with a config
// built from the world and captured logs, and the mocha hooks that bring a world and a proxy up and down for a suite.
// Must not start world components itself (harness/world.ts does) nor assert anything.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startWorld, type World, type WorldOptions } from './harness/world.js';
import { configSchema, type Config, type ListenerConfig } from '../../src/config/schema.js';
import type { Instance } from '../../src/server.js';
import type { Logger } from '../../src/log.js';
import type { ConnectionHandler } from '../../src/proxy/protocol.js';
import { Listener } from '../../src/proxy/listener.js';
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
    imap: { requireTlsForAuth: false, limits: { authFailureDelayMs: 300, authFailureMaxDelayMs: 300 } },
    pop3: { requireTlsForAuth: false, limits: { authFailureDelayMs: 300, authFailureMaxDelayMs: 300 } },
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

export interface WorldAndProxy {
  /** The running world; throws when read outside the suite's hooks and tests (before `before` ran, or after `after`). */
  readonly world: World;
  /** The proxy started in front of it, same rule. */
  readonly proxy: RunningProxy;
}

export interface WorldAndProxyOptions {
  world?: WorldOptions;
  /** Runs at the end of the same `before` hook, once both are up: per-suite extras (ports, CA, a second proxy, waiting for health). */
  onReady?: (world: World, proxy: RunningProxy) => void | Promise<void>;
  /** Runs first when tearing down (before the proxy and world stop), also when `before` failed half-way: stop what onReady started. */
  onStop?: () => void | Promise<void>;
}

/**
 * Registers, in the calling describe, a `before` hook that starts a world and a proxy configured by `worldConfig(world, mutate)`,
 * and an `after` hook that stops them (the proxy first). If any start fails, whatever already started is stopped before the
 * hook fails. Read `world` and `proxy` from the returned object inside hooks and tests.
 */
export function withWorldAndProxy(opts?: WorldAndProxyOptions): WorldAndProxy;
export function withWorldAndProxy(mutate: (raw: RawConfig, world: World) => void, opts?: WorldAndProxyOptions): WorldAndProxy;
export function withWorldAndProxy(
  mutateOrOpts?: ((raw: RawConfig, world: World) => void) | WorldAndProxyOptions,
  maybeOpts?: WorldAndProxyOptions,
): WorldAndProxy {
  const mutate = typeof mutateOrOpts === 'function' ? mutateOrOpts : undefined;
  const opts = (typeof mutateOrOpts === 'function' ? maybeOpts : mutateOrOpts) ?? {};
  let world: World | undefined;
  let proxy: RunningProxy | undefined;
  let stopPending = false;

  const teardown = async (): Promise<void> => {
    const p = proxy;
    const w = world;
    const steps = [stopPending ? opts.onStop : undefined, p && (() => p.stop()), w && (() => w.stop())];
    const errors: unknown[] = [];
    try {
      for (const step of steps) {
        try { await step?.(); } catch (err) { errors.push(err); }
      }
    } finally {
      [proxy, world, stopPending] = [undefined, undefined, false];
    }
    if (errors.length > 0) throw new Error(`withWorldAndProxy teardown: ${errors.map(String).join('; ')}`);
  };

  before('start world and proxy', async () => {
    stopPending = true;
    try {
      const w = (world = await startWorld(opts.world));
      const p = (proxy = await startProxy(worldConfig(w, (raw) => mutate?.(raw, w))));
      await opts.onReady?.(w, p);
    } catch (err) {
      await teardown().catch(() => undefined);
      throw err;
    }
  });
  after('stop proxy and world', teardown);

  const started = <T>(what: string, value: T | undefined): T => {
    if (value === undefined) throw new Error(`withWorldAndProxy: ${what} read outside the suite's before/after hooks (not started yet, failed to start, or stopped)`);
    return value;
  };
  return {
    get world() { return started('world', world); },
    get proxy() { return started('proxy', proxy); },
  };
}

export interface Served { port: number; close(): Promise<void> }

/** `handler` behind the real Listener (PROXY header, ids, metrics as in production) on `listener`'s address and port (0: any free one). */
export async function serveOnListener(handler: ConnectionHandler, listener: ListenerConfig, logger: Logger): Promise<Served> {
  const l = new Listener(listener, () => handler, logger);
  const { port } = await l.listen();
  return { port, close: () => l.close() };
}
