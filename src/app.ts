// Owns one proxy process's composition: Instance (listeners, sessions) + HealthMonitor gate + admin HTTP + agent-check + SMTP services.
// Must not install signal handlers or fork (runtime.ts and cluster.ts do); tests run it in-process.
import type { Logger } from './log.js';
import type { Config } from './config/schema.js';
import { Instance } from './server.js';
import type { HandlerDeps } from './proxy/protocol.js';
import { HealthMonitor } from './health/health.js';
import { kickSpread } from './ops/kick.js';
import { localAdminDeps } from './ops/admin-local.js';
import type { AdminDeps, Readiness } from './ops/http.js';
import { startOps, type Ops } from './ops/start.js';
import { TraceControl } from './trace/control.js';
import { createInboundService, createLmtpService, createSubmissionService, type SmtpServiceDeps } from './proxy/smtp/index.js';
import { ProxyError } from './errors.js';
import { collectProcessMetrics } from './metrics.js';
import type { Route } from './directory/backends.js';
import type { EffectiveState } from './health/backend-state.js';
import { explainRoute } from './pools/where.js';
import { Tier } from './tier/tier.js';
import { attachInstance, poolConflictSweep, tierAdminDeps, tierGate, type LocalActions } from './tier/attach.js';
import type { PoolConflictSweep } from './pools/conflict-sweep.js';
import type { TierViewSnapshot } from './tier/backend-view.js';

/** Session protocols that hold a spliced connection to one backend protocol. */
const SPLICED = new Set<string>(['imap', 'pop3', 'submission', 'sieve']);

export interface AppOptions {
  logger: Logger;
  /** primary: probes + admin here (single process or cluster primary). worker: state arrives via applyState. */
  role?: 'single' | 'worker';
  /** Worker: where passive outcomes go (IPC to the primary). */
  forwardReport?(route: Route, outcome: 'ok' | 'fail' | 'hang', identity?: string): void;
  /** Cluster worker: the instance id its primary speaks for in the tier. */
  tierInstanceId?: string;
}

/** SMTP services read config, directory and TLS material through getters at each connection, so SIGHUP reaches them. */
function smtpDeps(d: HandlerDeps): SmtpServiceDeps {
  return { config: d.config, directory: d.directory, gate: d.gate, sessions: d.sessions, pools: d.pools, logger: d.logger, secureContext: d.tls, penalty: d.penalty, clock: d.clock, dial: d.dial, guard: d.guard, ...(d.limiter ? { limiter: d.limiter } : {}), ...(d.traces ? { traces: d.traces } : {}), ...(d.tier ? { tier: d.tier } : {}) };
}

export class App {
  readonly instance: Instance;
  readonly monitor: HealthMonitor;
  /** Shared state on Redis (config `tier:`); undefined without it. */
  readonly tier: Tier | undefined;
  private ops: Ops | undefined;
  private trace: TraceControl | undefined;
  private conflictSweep: PoolConflictSweep | undefined;
  private listening = false;
  maintenance = false;

  constructor(config: Config, private readonly opts: AppOptions) {
    const role = opts.role ?? 'single';
    const logger = opts.logger;
    let instanceRef: Instance | undefined;
    this.monitor = new HealthMonitor({
      config,
      role: role === 'worker' ? 'worker' : 'primary',
      logger: logger.child({ module: 'health' }),
      ...(opts.forwardReport ? { forwardReport: opts.forwardReport } : {}),
      onBackendDown: (backend, protocol) => {
        if (!instanceRef || !SPLICED.has(protocol)) return;
        // Sessions spliced to a dead backend would hang on a half-open connection: say goodbye, spread out.
        kickSpread(instanceRef.sessions, { backend, protocol }, new ProxyError('BACKEND_DOWN', `backend ${backend} went down`), instanceRef.current.health.kickWindowMs);
      },
      onFailover: (backend, protocol, identity) => {
        if (!instanceRef || !SPLICED.has(protocol)) return;
        // The address moved to another node before the old one was seen down: sessions on the old node would hang.
        kickSpread(instanceRef.sessions, { backend, protocol, notIdentity: identity }, new ProxyError('BACKEND_DOWN', `another node answers for ${backend} ${protocol}: ${identity}`), instanceRef.current.health.kickWindowMs);
      },
      onFailback: (primary, standby, protocol) => {
        if (!instanceRef) return;
        // The primary serves new logins again: sessions still on its standby must go now, or two servers work on one mailbox.
        const error = new ProxyError('BACKEND_DOWN', `failback from ${standby} to ${primary}`);
        for (const s of instanceRef.sessions.list({ backend: standby })) {
          if (s.info.routedFor === primary && s.info.protocol === protocol) s.kick(error);
        }
      },
    });
    this.tier = config.tier
      ? new Tier({ config: config.tier, logger, role: role === 'worker' ? 'worker' : 'instance', ...(opts.tierInstanceId ? { instanceId: opts.tierInstanceId } : {}) })
      : undefined;
    this.instance = new Instance(config, {
      logger,
      gate: this.tier ? tierGate(this.monitor, (b, p) => this.isTierDown(b, p), () => this.config, (b, p) => this.monitor.stateOf(b, p)) : this.monitor,
      ...(this.tier ? { tier: this.tier, poolSessions: this.tier.sessions } : {}),
      handlers: {
        submission: (d) => createSubmissionService(smtpDeps(d)),
        smtp: (d) => createInboundService(smtpDeps(d)),
        lmtp: (d) => createLmtpService(smtpDeps(d)),
      },
    });
    instanceRef = this.instance;
    // Pool members move users on health changes (folded per backend: a member is down when any of its protocols is).
    for (const b of this.monitor.snapshot()) this.instance.pools.observe(b.backend, b.state, Date.parse(b.since));
    this.monitor.on('backend', (t: { backend: string; to: EffectiveState; at: number }) => this.instance.pools.observe(t.backend, t.to, t.at));
  }

  get config(): Config { return this.instance.current; }

  /** The admin HTTP server, once operations are started (single process). */
  get admin(): Ops['admin'] { return this.ops?.admin; }
  get agent(): Ops['agent'] { return this.ops?.agent; }
  get metricsListener(): Ops['metrics'] { return this.ops?.metrics; }

  /** Endpoints the tier holds down, as pushed by a cluster primary (workers have no backend view of their own). */
  private tierDown = new Set<string>();
  setTierDown(keys: readonly string[], view?: TierViewSnapshot): void {
    this.tierDown = new Set(keys);
    if (view) this.instance.pools.observeTier(view);
  }
  private isTierDown(backend: string, protocol: string): boolean {
    return this.tier?.backendView ? this.tier.backendView.isDown(backend, protocol) : this.tierDown.has(`${backend}\t${protocol}`);
  }

  /** This process only: never LDAP or backend health (DESIGN: a shared outage must not empty the pool). */
  readiness(): Readiness {
    const reasons: string[] = [];
    if (!this.listening) reasons.push('listeners not bound');
    if (this.instance.draining) reasons.push('draining');
    if (this.maintenance) reasons.push('maintenance');
    if (this.config.listeners.some((l) => l.tls !== 'none') && !this.config.tls) reasons.push('no TLS certificate');
    return { ready: reasons.length === 0, reasons, draining: this.instance.draining, maintenance: this.maintenance };
  }

  async start(): Promise<void> {
    collectProcessMetrics();
    await this.instance.start();
    this.listening = true;
    if ((this.opts.role ?? 'single') === 'single') await this.startOperations();
    this.tier?.start();
  }

  /** What tier actions from other instances (and this one's admin calls) do in this process. */
  tierActions(): LocalActions {
    const kicked = () => new ProxyError('ADMIN_KICK');
    return {
      kick: async (filter) => this.instance.sessions.kick(filter, kicked()),
      invalidateRoute: async (user) => this.instance.invalidateRoute(user),
      kickBackend: (backend, protocol) => {
        if (!SPLICED.has(protocol)) return;
        kickSpread(this.instance.sessions, { backend, protocol }, new ProxyError('BACKEND_DOWN', `backend ${backend} down (tier verdict)`), this.config.health.kickWindowMs);
      },
      viewChanged: (view) => this.instance.pools.observeTier(view),
    };
  }

  /** Probing, admin HTTP and agent-check: once per instance (single process, or the cluster primary). */
  async startOperations(): Promise<void> {
    this.monitor.start();
    if (this.tier?.role === 'instance') {
      attachInstance(this.tier, this.monitor, this.tierActions());
      this.conflictSweep = poolConflictSweep(this.tier, () => this.config, (p) => this.instance.pools.memberStates(p), this.tierActions(), this.opts.logger);
      this.conflictSweep?.start();
    }
    const readiness = () => this.readiness();
    this.trace = new TraceControl(this.instance.traces, this.opts.logger.child({ module: 'trace' }));
    const actions = this.tierActions();
    const local: AdminDeps = {
      invalidateRoute: async (user) => ({ user, dropped: await actions.invalidateRoute(user), kicked: await actions.kick({ user }), tier: false }),
      ...localAdminDeps({ monitor: this.monitor, sessions: this.instance.sessions, readiness, trace: this.trace }),
    };
    const deps = this.tier ? tierAdminDeps(local, this.tier, actions) : local;
    // Live sessions for the explanation come through deps.listSessions: tier-wide with a tier, this process's without.
    deps.routeOf = (user) => explainRoute({
      config: () => this.config,
      directory: () => this.instance.directoryNow,
      pools: this.instance.pools,
      backendState: (name) => this.monitor.snapshot().find((b) => b.backend === name),
      sessionsOf: (login) => deps.listSessions({ user: login }),
    }, user);
    this.ops = await startOps({ config: this.config, logger: this.opts.logger, readiness, deps });
  }

  async reload(next: Config): Promise<void> {
    await this.instance.reload(next);
    this.monitor.reload(next);
  }

  /** Stop accepting (readiness false, agent says drain); sessions continue. */
  async drain(): Promise<void> { await this.instance.stopListening(); }

  async close(): Promise<void> {
    this.conflictSweep?.stop();
    await this.tier?.close();
    this.monitor.stop();
    this.trace?.close();
    await this.instance.close();
    await this.ops?.close();
  }
}
