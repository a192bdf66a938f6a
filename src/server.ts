// Owns one running proxy instance: builds directory, TLS context, services and listeners from a Config; reload and drain.
// Must not contain protocol logic; it wires modules together and swaps them on reload.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from './log.js';
import type { Config, ListenerConfig } from './config/schema.js';
import type { Directory } from './directory/directory.js';
import { createDirectory } from './directory/create.js';
import { openGate, type BackendGate } from './health/gate.js';
import { SessionRegistry } from './proxy/sessions.js';
import { Listener } from './proxy/listener.js';
import { ProtocolService } from './proxy/session.js';
import type { ConnectionHandler } from './proxy/protocol.js';
import { imapModule } from './proxy/imap/index.js';
import { pop3Module } from './proxy/pop3/index.js';
import { ProxyError } from './errors.js';
import { AuthPenalty } from './proxy/auth-penalty.js';

export interface BoundListener { config: ListenerConfig; address: string; port: number }

export interface InstanceOptions {
  logger: Logger;
  /** Health gate; the primary's monitor, a worker's mirror, or openGate. */
  gate?: BackendGate;
  sessions?: SessionRegistry;
  /** Extra handlers by listener protocol (SMTP services are wired by the caller). */
  handlers?: Partial<Record<ListenerConfig['protocol'], (deps: HandlerDeps) => ConnectionHandler>>;
}

export interface HandlerDeps {
  config: () => Config;
  directory: () => Directory;
  gate: BackendGate;
  sessions: SessionRegistry;
  logger: Logger;
  secureContext: () => SecureContext | undefined;
  /** Failed-login penalty per client address, shared by every protocol of this process. */
  penalty: AuthPenalty;
  /** Raw PEM material for services that build their own TLS (smtp-server). */
  tlsMaterial: () => { key: Buffer; cert: Buffer } | undefined;
}

export function loadSecureContext(config: Config): { context: SecureContext; key: Buffer; cert: Buffer } | undefined {
  if (!config.tls) return undefined;
  const key = readFileSync(config.tls.keyFile);
  const cert = readFileSync(config.tls.certFile);
  return { context: createSecureContext({ key, cert, minVersion: config.tls.minVersion, ...(config.tls.ciphers ? { ciphers: config.tls.ciphers } : {}) }), key, cert };
}

export class Instance {
  private config: Config;
  private directory: Directory;
  private tls: ReturnType<typeof loadSecureContext>;
  readonly sessions: SessionRegistry;
  readonly gate: BackendGate;
  private readonly handlers = new Map<ListenerConfig['protocol'], ConnectionHandler>();
  private listeners: Listener[] = [];
  bound: BoundListener[] = [];
  draining = false;

  constructor(config: Config, private readonly opts: InstanceOptions) {
    this.config = config;
    this.tls = loadSecureContext(config);
    this.directory = createDirectory(config, opts.logger.child({ module: 'directory' }));
    this.sessions = opts.sessions ?? new SessionRegistry();
    this.gate = opts.gate ?? openGate;
    const deps: HandlerDeps = {
      config: () => this.config,
      directory: () => this.directory,
      gate: this.gate,
      sessions: this.sessions,
      logger: opts.logger,
      penalty: new AuthPenalty(),
      secureContext: () => this.tls?.context,
      tlsMaterial: () => (this.tls ? { key: this.tls.key, cert: this.tls.cert } : undefined),
    };
    this.handlers.set('imap', new ProtocolService({ ...deps, module: imapModule }));
    this.handlers.set('pop3', new ProtocolService({ ...deps, module: pop3Module }));
    for (const [proto, make] of Object.entries(opts.handlers ?? {})) {
      if (make) this.handlers.set(proto as ListenerConfig['protocol'], make(deps));
    }
  }

  get current(): Config { return this.config; }

  async start(): Promise<BoundListener[]> {
    for (const lc of this.config.listeners) {
      const handler = this.handlers.get(lc.protocol);
      if (!handler) throw new ProxyError('CONFIG_INVALID', `no handler for protocol ${lc.protocol}`);
      const l = new Listener(lc, () => this.handlers.get(lc.protocol)!, this.opts.logger);
      const addr = await l.listen();
      this.listeners.push(l);
      this.bound.push({ config: lc, ...addr });
    }
    return this.bound;
  }

  /**
   * Apply a new configuration without dropping sessions: directory, TLS material, limits and backends are swapped;
   * live sessions keep what they started with. Listener changes need a restart (logged).
   */
  async reload(next: Config): Promise<void> {
    const tls = loadSecureContext(next);
    const directory = createDirectory(next, this.opts.logger.child({ module: 'directory' }));
    const old = this.directory;
    this.config = next;
    this.tls = tls;
    this.directory = directory;
    setTimeout(() => { old.close().catch(() => undefined); }, 30_000).unref();
    if (JSON.stringify(next.listeners) !== JSON.stringify(this.bound.map((b) => b.config))) {
      this.opts.logger.warn('listener changes take effect on restart');
    }
  }

  /** Stop accepting; sessions continue. */
  async stopListening(): Promise<void> {
    this.draining = true;
    await Promise.all(this.listeners.map((l) => l.close()));
  }

  /** Goodbye to every live session and close everything. */
  async close(): Promise<void> {
    await this.stopListening();
    await Promise.all([...this.handlers.values()].map((h) => h.close()));
    await this.directory.close();
  }
}
