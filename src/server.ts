// Owns one running proxy instance: builds directory, TLS context, services and listeners from a Config; reload and drain.
// Must not contain protocol logic; it wires modules together and swaps them on reload.
import type { Logger } from './log.js';
import type { Config, ListenerConfig } from './config/schema.js';
import type { Directory } from './directory/directory.js';
import { createDirectory } from './directory/create.js';
import { openGate, type BackendGate } from './health/gate.js';
import { SessionRegistry } from './proxy/sessions.js';
import { PoolRouter, type TierSessionSource } from './pools/pool-router.js';
import { Listener } from './proxy/listener.js';
import { ProtocolService } from './proxy/session.js';
import type { ConnectionHandler, HandlerDeps } from './proxy/protocol.js';
import { systemClock, type Clock } from './core/clock.js';
import { netDial, type Dial } from './proxy/backend-connect.js';
import { imapModule } from './proxy/imap/index.js';
import { pop3Module } from './proxy/pop3/index.js';
import { sieveModule } from './proxy/sieve/index.js';
import { ProxyError } from './errors.js';
import { AuthPenalty } from './proxy/auth-penalty.js';
import { TraceTable } from './trace/table.js';
import { loadTlsMaterial, type TlsMaterial } from './tls/certificates.js';
import { createBackendGuard, type BackendGuard } from './proxy/backend-guard.js';
import { BackendLimiter } from './proxy/backend-limit.js';
import { setCertificateExpirySource } from './metrics.js';
import type { TierLogin } from './tier/tier.js';

export interface BoundListener { config: ListenerConfig; address: string; port: number }

/**
 * What a reload does to the listeners: a listener keeps its socket when the new config has one on the same address and
 * port (its other settings are updated); the rest of the old ones close and the rest of the new ones are bound. Port 0
 * (any free port, used by tests) is only matched by an identical listener config.
 */
export function planListeners<L extends { config: ListenerConfig }>(current: readonly L[], next: readonly ListenerConfig[]): {
  keep: Array<{ listener: L; config: ListenerConfig; index: number }>;
  add: Array<{ config: ListenerConfig; index: number }>;
  remove: L[];
} {
  const unmatched = new Set(current);
  const keep: Array<{ listener: L; config: ListenerConfig; index: number }> = [];
  const add: Array<{ config: ListenerConfig; index: number }> = [];
  next.forEach((config, index) => {
    const same = [...unmatched].find((l) => l.config.address === config.address && l.config.port === config.port
      && (config.port !== 0 || JSON.stringify(l.config) === JSON.stringify(config)));
    if (same) { unmatched.delete(same); keep.push({ listener: same, config, index }); } else add.push({ config, index });
  });
  return { keep, add, remove: [...unmatched] };
}

export interface InstanceOptions {
  logger: Logger;
  /** Health gate; the primary's monitor, a worker's mirror, or openGate. */
  gate?: BackendGate;
  sessions?: SessionRegistry;
  /** Extra handlers by listener protocol (SMTP services are wired by the caller). */
  handlers?: Partial<Record<ListenerConfig['protocol'], (deps: HandlerDeps) => ConnectionHandler>>;
  /** Tier-wide penalty, limits and session registry (config `tier:`); absent = this process's own. */
  tier?: TierLogin;
  /** Time and backend dialling (tests inject fakes). */
  clock?: Clock;
  /** The tier's session registry, so pool affinity sees every instance's live sessions (`tier:`); this process's own without it. */
  poolSessions?: TierSessionSource;
  dial?: Dial;
}

/** Does a reload leave the directory as it is (same `directory` and `oauth` sections, secrets read from files included)? */
export function sameDirectorySettings(prev: Config, next: Config): boolean {
  return JSON.stringify(prev.directory) === JSON.stringify(next.directory) && JSON.stringify(prev.oauth) === JSON.stringify(next.oauth);
}

export class Instance {
  private config: Config;
  private directory: Directory;
  private tls: TlsMaterial | undefined;
  readonly sessions: SessionRegistry;
  readonly gate: BackendGate;
  /** Users traced on demand (set through the admin API, or by the cluster primary over IPC). */
  readonly traces = new TraceTable();
  readonly pools: PoolRouter;
  private readonly handlers = new Map<ListenerConfig['protocol'], ConnectionHandler>();
  private listeners: Listener[] = [];
  private readonly guard: BackendGuard;
  draining = false;

  constructor(config: Config, private readonly opts: InstanceOptions) {
    this.config = config;
    this.guard = createBackendGuard(() => this.bound, () => this.config.loopProtection.selfAddresses, (reason) =>
      opts.logger.warn({ event: 'interfaces_unreadable', reason }, `cannot read this host's interface addresses (${reason}; a sandbox without AF_NETLINK?): loop protection knows loopback only, list the others in loopProtection.selfAddresses`));
    this.tls = loadTlsMaterial(config);
    this.useTls(this.tls);
    this.directory = createDirectory(config, opts.logger.child({ module: 'directory' }));
    this.sessions = opts.sessions ?? new SessionRegistry();
    this.gate = opts.gate ?? openGate;
    const clock = opts.clock ?? systemClock;
    this.pools = new PoolRouter({ config: () => this.config, sessions: this.sessions, logger: opts.logger.child({ module: 'pools' }), now: () => clock.now(), ...(opts.poolSessions ? { tier: opts.poolSessions } : {}) });
    const deps: HandlerDeps = {
      config: () => this.config,
      directory: () => this.directory,
      gate: this.gate,
      sessions: this.sessions,
      pools: this.pools,
      logger: opts.logger,
      penalty: new AuthPenalty(),
      tls: () => this.tls,
      guard: this.guard,
      limiter: new BackendLimiter(() => this.config.backendLogin, clock),
      ...(opts.tier ? { tier: opts.tier } : {}),
      clock: opts.clock ?? systemClock,
      dial: opts.dial ?? netDial,
      traces: this.traces,
    };
    this.handlers.set('imap', new ProtocolService({ ...deps, module: imapModule }));
    this.handlers.set('pop3', new ProtocolService({ ...deps, module: pop3Module }));
    this.handlers.set('sieve', new ProtocolService({ ...deps, module: sieveModule }));
    for (const [proto, make] of Object.entries(opts.handlers ?? {})) {
      if (make) this.handlers.set(proto as ListenerConfig['protocol'], make(deps));
    }
  }

  get current(): Config { return this.config; }
  /** The directory in use now (a reload may replace it). */
  get directoryNow(): Directory { return this.directory; }

  /** Drop what the directory cache holds about one account (route invalidation); how many entries went. */
  invalidateRoute(user: string): number { return this.directory.invalidate?.(user) ?? 0; }

  /** Certificates in use feed the expiry gauge; expiry warnings are logged at each load. */
  private useTls(tls: TlsMaterial | undefined): void {
    for (const w of tls?.warnings ?? []) this.opts.logger.warn({ event: 'tls_certificate', warning: w }, 'TLS certificate warning');
    setCertificateExpirySource(() => (this.tls?.certificates ?? []).map((c) => ({ name: c.name, notAfter: c.notAfter })));
  }

  /** Every open listener with the address and port it is bound to, in config order. */
  get bound(): BoundListener[] {
    return this.listeners.map((l) => ({ config: l.config, ...l.local! }));
  }

  async start(): Promise<BoundListener[]> {
    this.checkHandlers(this.config.listeners);
    this.listeners = await this.openListeners(this.config.listeners);
    this.pools.start();
    return this.bound;
  }

  private checkHandlers(configs: readonly ListenerConfig[]): void {
    for (const lc of configs) {
      if (!this.handlers.has(lc.protocol)) throw new ProxyError('CONFIG_INVALID', `no handler for protocol ${lc.protocol}`);
    }
  }

  /** Bind every listener in `configs`, or none: on the first failure the ones already bound are closed again. */
  private async openListeners(configs: readonly ListenerConfig[]): Promise<Listener[]> {
    const opened: Listener[] = [];
    try {
      for (const lc of configs) {
        const listener: Listener = new Listener(lc, () => this.handlers.get(listener.config.protocol)!, this.opts.logger);
        await listener.listen().catch((e: Error) => {
          throw new ProxyError('CONFIG_INVALID', `cannot listen on ${lc.address}:${lc.port} (${lc.protocol}): ${e.message}`, { cause: e });
        });
        opened.push(listener);
      }
    } catch (e) {
      await Promise.all(opened.map((l) => l.close()));
      throw e;
    }
    return opened;
  }

  /**
   * Apply a new configuration without dropping sessions: directory, TLS material, limits, backends and listeners are
   * swapped; live sessions keep what they started with. New listeners are bound first, so a port that cannot be bound
   * (or a certificate that cannot be read) refuses the whole reload and nothing changes; removed listeners stop
   * accepting while their sessions continue.
   */
  async reload(next: Config): Promise<void> {
    const tls = loadTlsMaterial(next);
    this.checkHandlers(next.listeners);
    const plan = this.draining ? undefined : planListeners(this.listeners, next.listeners);
    // An unchanged directory section keeps the directory: its cache (which carries cached users through an LDAP
    // outage), pooled connections and what it knows of each server's state; a static users file is re-read.
    const keep = sameDirectorySettings(this.config, next);
    if (keep) await this.directory.reload?.();
    const directory = keep ? this.directory : createDirectory(next, this.opts.logger.child({ module: 'directory' }));
    let added: Listener[];
    try {
      added = plan ? await this.openListeners(plan.add.map((a) => a.config)) : [];
    } catch (e) {
      if (!keep) await directory.close().catch(() => undefined);
      throw e;
    }
    const old = this.directory;
    this.config = next;
    this.tls = tls;
    this.useTls(tls);
    this.guard.refresh();
    this.directory = directory;
    if (!keep) setTimeout(() => { old.close().catch(() => undefined); }, 30_000).unref();
    if (!plan) return;
    const listeners: Listener[] = [];
    for (const k of plan.keep) {
      k.listener.update(k.config);
      listeners[k.index] = k.listener;
    }
    plan.add.forEach((a, i) => { listeners[a.index] = added[i]!; });
    for (const l of plan.remove) {
      await l.close();
      this.opts.logger.info({ event: 'listener_closed', protocol: l.config.protocol, address: l.config.address, port: l.config.port }, 'listener closed by reload; its sessions continue');
    }
    for (const l of added) this.opts.logger.info({ event: 'listener_opened', protocol: l.config.protocol, tls: l.config.tls, ...l.local }, 'listening (added by reload)');
    this.listeners = listeners;
  }

  /** Stop accepting; sessions continue. */
  async stopListening(): Promise<void> {
    this.draining = true;
    await Promise.all(this.listeners.map((l) => l.close()));
  }

  /** Goodbye to every live session and close everything. */
  async close(): Promise<void> {
    this.pools.stop();
    await this.stopListening();
    await Promise.all([...this.handlers.values()].map((h) => h.close()));
    await this.directory.close();
  }
}
