// Owns multi-core mode (node:cluster): the primary (health monitor and probes, admin HTTP, agent-check, worker supervision,
// metrics/sessions gathered from workers over IPC) and the worker's side of that IPC. Must not bind mail listeners in the primary.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from './log.js';
import { createLogger } from './log.js';
import { TraceControl } from './trace/control.js';
import { TraceTable, type TraceEntry } from './trace/table.js';
import type { Config } from './config/schema.js';
import type { Route } from './directory/backends.js';
import { App } from './app.js';
import { ProxyError } from './errors.js';
import { collectProcessMetrics, registry, workerRestartsTotal } from './metrics.js';
import { HealthMonitor, type BackendSnapshot } from './health/health.js';
import type { AdminDeps, Readiness, SessionFilter } from './ops/http.js';
import { startOps, type Ops } from './ops/start.js';
import { countSessionsByBackend } from './ops/kick.js';
import type { SessionInfo } from './proxy/sessions.js';
import { Tier } from './tier/tier.js';
import { attachInstance, poolConflictSweep, tierAdminDeps, type LocalActions } from './tier/attach.js';
import type { TierViewSnapshot } from './tier/backend-view.js';
import { drainApp, exitSoon, restartOnlyChanges, tryReload } from './lifecycle.js';
import { SessionRegistry } from './proxy/sessions.js';
import { PoolRouter } from './pools/pool-router.js';
import { explainRoute } from './pools/where.js';
import { createDirectory } from './directory/create.js';
import type { Directory } from './directory/directory.js';
import type { EffectiveState } from './health/backend-state.js';

type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
interface BoundInfo { protocol: string; address: string; port: number; tls: string }

/** Questions the primary asks every worker; each answers with one `res`. */
type Ask =
  | { op: 'metrics' }
  | { op: 'sessions'; filter: SessionFilter }
  | { op: 'counts' }
  | { op: 'kick'; filter: SessionFilter }
  | { op: 'invalidate'; user: string }
  | { op: 'kickBackend'; backend: string; protocol: string }
  | { op: 'reload'; config: Config; gen: number }
  /** Trace on demand: the primary's whole list, applied as is (so a restarted worker catches up too). */
  | { op: 'traces'; list: TraceEntry[] }
  | { op: 'ping' };

type ToWorker =
  | { t: 'mailproxy:config'; config: Config; gen: number; slot: number; tierInstanceId?: string }
  | { t: 'mailproxy:tierdown'; down: string[]; view?: TierViewSnapshot }
  | { t: 'mailproxy:state'; snapshot: BackendSnapshot[] }
  | { t: 'mailproxy:drain' }
  | ({ t: 'mailproxy:req'; id: number } & Ask);

type FromWorker =
  | { t: 'mailproxy:hello' }
  | { t: 'mailproxy:ready'; bound: BoundInfo[]; gen: number }
  | { t: 'mailproxy:failed'; error: string }
  | { t: 'mailproxy:report'; route: Route; outcome: 'ok' | 'fail' | 'hang'; identity?: string }
  | { t: 'mailproxy:res'; id: number; ok: boolean; value?: unknown; error?: string };

/** Health metrics only the primary's monitor sets: taken from the primary once, never summed over workers. */
const PRIMARY_ONLY = new Set(['mailproxy_backend_up', 'mailproxy_backend_split_brain', 'mailproxy_backend_state_transitions_total', 'mailproxy_backend_identity_changes_total', 'mailproxy_probes_total']);
/** Per-process views of a shared thing: a server one worker cannot reach shows as down (min), not as "2". */
const AGGREGATE_AS: Record<string, 'min' | 'max'> = { mailproxy_ldap_up: 'min', mailproxy_tls_certificate_expiry_seconds: 'min' };
const STATE_REFRESH_MS = 2000;
const ASK_TIMEOUT_MS = 3000;
const RESTART_WINDOW_MS = 60_000;
/** How long after the drain deadline the primary waits for workers before killing them. */
const DRAIN_GRACE_MS = 10_000;
/** How often the primary checks on its workers (at most; a short workerHangTimeoutMs checks more often). */
const HEARTBEAT_MS = 1000;

const isMessage = (m: unknown): m is FromWorker => !!m && typeof m === 'object' && typeof (m as { t?: unknown }).t === 'string' && (m as { t: string }).t.startsWith('mailproxy:');

/** `lastSeen`: when the worker last answered (ready or a heartbeat); `hung`: killed by the watchdog, its exit is a restart for that reason. */
interface Slot { slot: number; worker: Worker; ready: boolean; gen: number; bound: BoundInfo[]; failure?: string; lastSeen: number; pinging: boolean; hung: boolean }
interface Pending { workerId: number; resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }

class Primary {
  private config: Config;
  private gen = 1;
  private readonly monitor: HealthMonitor;
  private readonly workers = new Map<number, Slot>();
  private readonly restarts: number[][];
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private readonly pending = new Map<number, Pending>();
  private readonly trace: TraceControl;
  private seq = 0;
  private phase: 'starting' | 'running' | 'draining' = 'starting';
  private broadcastQueued = false;
  private refresh: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private ops: Ops | undefined;
  private startup!: { resolve(): void; reject(e: Error): void };
  private allGone: (() => void) | undefined;
  /** `GET /routes/USER` here: the primary's health view, the workers' sessions over IPC, a directory opened on first use. */
  private readonly pools: PoolRouter;
  private directory: Directory | undefined;
  /** Tier (config `tier:`): the primary speaks for the instance (heartbeat, broadcast, backend view); workers do the login path. */
  private readonly tier: Tier | undefined;
  private tierDown: string[] = [];
  private tierView: TierViewSnapshot | undefined;

  constructor(config: Config, private readonly file: string, private readonly log: Logger, private readonly count: number) {
    this.config = config;
    this.restarts = Array.from({ length: count }, () => []);
    this.monitor = new HealthMonitor({ config, role: 'primary', logger: log.child({ module: 'health' }) });
    this.monitor.on('transition', () => this.queueBroadcast());
    this.monitor.on('backend', () => this.queueBroadcast());
    this.trace = new TraceControl(new TraceTable(), log.child({ module: 'trace' }), async (list) => (await this.values<boolean>({ op: 'traces', list })).length);
    this.tier = config.tier ? new Tier({ config: config.tier, logger: log, role: 'instance' }) : undefined;
    this.pools = new PoolRouter({ config: () => this.config, sessions: new SessionRegistry(), ...(this.tier ? { tier: this.tier.sessions } : {}) });
    for (const b of this.monitor.snapshot()) this.pools.observe(b.backend, b.state, Date.parse(b.since));
    this.monitor.on('backend', (t: { backend: string; to: EffectiveState; at: number }) => this.pools.observe(t.backend, t.to, t.at));
  }

  /** What tier actions do here: carried out by every worker over IPC. */
  private tierActions(): LocalActions {
    const sum = (rs: Array<{ value: number }>) => rs.reduce((n, r) => n + r.value, 0);
    return {
      kick: async (filter) => sum(await this.values<number>({ op: 'kick', filter })),
      invalidateRoute: async (user) => sum(await this.values<number>({ op: 'invalidate', user })),
      kickBackend: (backend, protocol) => { void this.askAll({ op: 'kickBackend', backend, protocol }); },
      verdictsChanged: (down) => {
        this.tierDown = [...down];
        for (const w of this.workers.values()) this.send(w.worker, this.tierMessage());
      },
      viewChanged: (view) => {
        this.tierView = view;
        this.pools.observeTier(view);
        for (const w of this.workers.values()) this.send(w.worker, this.tierMessage());
      },
    };
  }

  /** The tier's view for the workers: endpoints held down (gate) and the whole view (pool member conditions). */
  private tierMessage(): ToWorker {
    return { t: 'mailproxy:tierdown', down: this.tierDown, ...(this.tierView ? { view: this.tierView } : {}) };
  }

  async start(): Promise<void> {
    collectProcessMetrics();
    this.monitor.start();
    if (this.tier) {
      attachInstance(this.tier, this.monitor, this.tierActions());
      poolConflictSweep(this.tier, () => this.config, (p) => this.pools.memberStates(p), this.tierActions(), this.log)?.start();
      this.tier.start();
    }
    this.ops = await startOps({ config: this.config, logger: this.log, deps: this.adminDeps(), readiness: () => this.readiness() });
    cluster.on('message', (worker, m: unknown) => { if (isMessage(m)) this.onMessage(worker, m); });
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
    const started = new Promise<void>((resolve, reject) => { this.startup = { resolve, reject }; });
    for (let slot = 0; slot < this.count; slot++) this.fork(slot);
    try {
      await started;
    } catch (e) {
      for (const w of this.workers.values()) w.worker.process.kill('SIGKILL');
      await this.closeOperations();
      throw e;
    }
    this.phase = 'running';
    const first = [...this.workers.values()][0]!;
    for (const b of first.bound) this.log.info({ ...b, workers: this.count }, 'listening');
    this.refresh = setInterval(() => this.broadcastState(), STATE_REFRESH_MS);
    this.refresh.unref();
    const hang = this.config.workerHangTimeoutMs;
    if (hang > 0) {
      this.watchdog = setInterval(() => this.checkWorkers(), Math.max(50, Math.min(HEARTBEAT_MS, Math.floor(hang / 4))));
      this.watchdog.unref();
    }
  }

  /**
   * Watchdog: node:cluster hands each accepted connection to a worker in turn, so a worker whose event loop is stuck
   * (or that was SIGSTOPped) would swallow its share of new clients without answering. Every tick each listening worker
   * gets a heartbeat over IPC; one silent for workerHangTimeoutMs is killed, and the exit handler starts a replacement.
   */
  private checkWorkers(): void {
    const hang = this.config.workerHangTimeoutMs;
    if (this.phase !== 'running' || hang <= 0) return;
    const now = Date.now();
    for (const w of this.workers.values()) {
      if (!w.ready || w.hung) continue;
      if (now - w.lastSeen > hang) {
        w.hung = true;
        this.log.error({ event: 'worker_unresponsive', worker: w.slot, pid: w.worker.process.pid, silentMs: now - w.lastSeen }, 'worker stopped answering; killing it');
        w.worker.process.kill('SIGKILL');
        continue;
      }
      if (w.pinging) continue;
      w.pinging = true;
      this.askOne<boolean>(w, { op: 'ping' }, hang)
        .then(() => { w.lastSeen = Date.now(); }, () => undefined)
        .finally(() => { w.pinging = false; });
    }
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    const listening = [...this.workers.values()].filter((w) => w.ready).length;
    if (listening < this.count) reasons.push(`workers listening ${listening}/${this.count}`);
    if (this.phase === 'draining') reasons.push('draining');
    return { ready: reasons.length === 0, reasons, draining: this.phase === 'draining', maintenance: false };
  }

  /** SIGHUP: validate here once, then every worker applies the same validated config (no worker re-reads a file that may have changed again). */
  async reload(): Promise<void> {
    if (this.phase === 'draining') return;
    const next = tryReload(this.file, this.log);
    if (!next) return;
    restartOnlyChanges(this.config, next, this.log);
    this.config = next;
    const oldDirectory = this.directory;
    this.directory = undefined;
    void oldDirectory?.close().catch(() => undefined);
    const gen = ++this.gen;
    this.monitor.reload(next);
    this.broadcastState();
    const replies = await this.askAll<boolean>({ op: 'reload', config: next, gen }, 10_000);
    const failed = replies.filter((r) => r.error);
    for (const r of replies) if (!r.error) r.slot.gen = Math.max(r.slot.gen, gen);
    if (failed.length) this.log.error({ event: 'reload_failed', failed: failed.map((r) => ({ worker: r.slot.slot, pid: r.slot.worker.process.pid, err: r.error })) }, 'reload failed in some workers; they keep the old configuration');
    if (failed.length < replies.length || !replies.length) this.log.info({ event: 'reloaded', file: this.file, workers: replies.length - failed.length }, 'configuration reloaded');
  }

  /** SIGTERM: readiness false at once, every worker drains (its sessions get until the deadline), leave when all are gone. */
  async stop(signal: string): Promise<void> {
    if (this.phase === 'draining') return;
    this.phase = 'draining';
    const t0 = Date.now();
    const deadline = this.config.shutdown.drainDeadlineMs;
    this.log.info({ event: 'drain', signal, drainDeadlineMs: deadline, workers: this.workers.size }, 'draining');
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    clearInterval(this.refresh);
    clearInterval(this.watchdog);
    const gone = new Promise<void>((r) => { this.allGone = r; });
    for (const w of this.workers.values()) this.send(w.worker, { t: 'mailproxy:drain' });
    if (this.workers.size === 0) this.allGone?.();
    const inTime = await Promise.race([gone.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), deadline + DRAIN_GRACE_MS))]);
    if (!inTime) {
      this.log.error({ pids: [...this.workers.values()].map((w) => w.worker.process.pid) }, 'workers did not stop in time; killing them');
      for (const w of this.workers.values()) w.worker.process.kill('SIGKILL');
    }
    await this.closeOperations();
    this.log.info({ event: 'stopped', signal, drainMs: Date.now() - t0 }, 'stopped');
    exitSoon(this.log, inTime ? 0 : 1);
  }

  private async closeOperations(): Promise<void> {
    await this.tier?.close();
    this.monitor.stop();
    this.trace.close();
    await this.ops?.close();
    await this.directory?.close().catch(() => undefined);
  }

  private fork(slot: number): void {
    const worker = cluster.fork();
    this.workers.set(worker.id, { slot, worker, ready: false, gen: 0, bound: [], lastSeen: Date.now(), pinging: false, hung: false });
  }

  private onMessage(worker: Worker, m: FromWorker): void {
    const w = this.workers.get(worker.id);
    if (!w) return;
    switch (m.t) {
      case 'mailproxy:hello':
        this.send(worker, { t: 'mailproxy:config', config: this.config, gen: this.gen, slot: w.slot, ...(this.tier ? { tierInstanceId: this.tier.instanceId } : {}) });
        this.send(worker, { t: 'mailproxy:state', snapshot: this.monitor.snapshot() });
        if (this.tier) this.send(worker, this.tierMessage());
        return;
      case 'mailproxy:ready':
        w.ready = true;
        w.lastSeen = Date.now();
        w.gen = m.gen;
        w.bound = m.bound;
        this.log.info({ event: 'worker_ready', worker: w.slot, pid: worker.process.pid }, 'worker listening');
        this.send(worker, { t: 'mailproxy:state', snapshot: this.monitor.snapshot() });
        if (this.trace.table.any) void this.askOne<boolean>(w, { op: 'traces', list: this.trace.table.list() }).catch((e: Error) => this.log.warn({ worker: w.slot, err: e.message }, 'worker did not take the trace list'));
        if (this.phase === 'draining') this.send(worker, { t: 'mailproxy:drain' });
        else if (w.gen < this.gen) void this.askOne<boolean>(w, { op: 'reload', config: this.config, gen: this.gen }, 10_000).then(() => { w.gen = this.gen; }, (e: Error) => this.log.error({ worker: w.slot, err: e.message }, 'worker reload failed'));
        if (this.phase === 'starting' && [...this.workers.values()].every((x) => x.ready) && this.workers.size === this.count) this.startup.resolve();
        return;
      case 'mailproxy:failed':
        w.failure = m.error;
        this.log.error({ event: 'worker_start_failed', worker: w.slot, pid: worker.process.pid, err: m.error }, 'worker could not start');
        return;
      case 'mailproxy:report':
        this.monitor.report(m.route, m.outcome, m.identity);
        return;
      case 'mailproxy:res': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.value); else p.reject(new Error(m.error ?? 'worker error'));
        return;
      }
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const w = this.workers.get(worker.id);
    if (!w) return;
    this.workers.delete(worker.id);
    for (const [id, p] of this.pending) {
      if (p.workerId !== worker.id) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new Error(`worker ${w.slot} exited`));
    }
    const info = { event: 'worker_exit', worker: w.slot, pid: worker.process.pid, code, signal };
    if (this.phase === 'draining') {
      this.log.info(info, 'worker stopped');
      if (this.workers.size === 0) this.allGone?.();
      return;
    }
    if (this.phase === 'starting') {
      this.log.error(info, 'worker exited during startup');
      this.startup.reject(new Error(`worker ${w.slot} exited during startup (code ${code}, signal ${signal})${w.failure ? `: ${w.failure}` : ''}`));
      return;
    }
    // Back off when a worker keeps dying (a crash loop must not eat a core): 250 ms doubling per restart within a minute, at most 30 s.
    const now = Date.now();
    const recent = this.restarts[w.slot]!.filter((t) => now - t < RESTART_WINDOW_MS);
    recent.push(now);
    this.restarts[w.slot] = recent;
    const delayMs = Math.min(30_000, 250 * 2 ** (recent.length - 1));
    workerRestartsTotal.inc({ reason: w.hung ? 'unresponsive' : 'exited' });
    this.log.warn({ ...info, reason: w.hung ? 'unresponsive' : 'exited', restartInMs: delayMs }, 'worker died; restarting it');
    const t = setTimeout(() => { this.restartTimers.delete(t); if (this.phase === 'running') this.fork(w.slot); }, delayMs);
    this.restartTimers.add(t);
  }

  private send(worker: Worker, m: ToWorker): void {
    if (!worker.isConnected()) return;
    worker.send(m, undefined, (e: Error | null) => { if (e) this.log.debug({ pid: worker.process.pid, err: e.message }, 'IPC send failed'); });
  }

  private queueBroadcast(): void {
    if (this.broadcastQueued) return;
    this.broadcastQueued = true;
    setImmediate(() => { this.broadcastQueued = false; this.broadcastState(); });
  }

  private broadcastState(): void {
    const snapshot = this.monitor.snapshot();
    for (const w of this.workers.values()) this.send(w.worker, { t: 'mailproxy:state', snapshot });
  }

  private askOne<T>(w: Slot, ask: Ask, timeoutMs = ASK_TIMEOUT_MS): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`worker ${w.slot} did not answer ${ask.op} within ${timeoutMs} ms`)); }, timeoutMs);
      this.pending.set(id, { workerId: w.worker.id, resolve: resolve as (v: unknown) => void, reject, timer });
      this.send(w.worker, { t: 'mailproxy:req', id, ...ask });
    });
  }

  /** Ask every listening worker; a worker that fails or times out is logged and left out. */
  private async askAll<T>(ask: Ask, timeoutMs = ASK_TIMEOUT_MS): Promise<Array<{ slot: Slot; value?: T; error?: string }>> {
    const targets = [...this.workers.values()].filter((w) => w.ready && w.worker.isConnected());
    const settled = await Promise.allSettled(targets.map((w) => this.askOne<T>(w, ask, timeoutMs)));
    return settled.map((r, i) => {
      if (r.status === 'fulfilled') return { slot: targets[i]!, value: r.value };
      const error = (r.reason as Error).message;
      this.log.warn({ event: 'worker_ask_failed', op: ask.op, worker: targets[i]!.slot, err: error }, 'worker did not answer');
      return { slot: targets[i]!, error };
    });
  }

  private async values<T>(ask: Ask): Promise<Array<{ slot: Slot; value: T }>> {
    return (await this.askAll<T>(ask)).filter((r): r is { slot: Slot; value: T } => r.error === undefined);
  }

  /** One /metrics for the instance: workers' registries summed, the primary's health metrics once. */
  async metrics(): Promise<{ contentType: string; body: string }> {
    const own = await registry.getMetricsAsJSON();
    const fromWorkers = (await this.values<MetricsJson>({ op: 'metrics' })).map((r) => r.value.filter((m) => !PRIMARY_ONLY.has(m.name)));
    const sets = [own, ...fromWorkers].map((set) => set.map((m) => (AGGREGATE_AS[m.name] ? { ...m, aggregator: AGGREGATE_AS[m.name]! } : m)));
    const merged = AggregatorRegistry.aggregate(sets);
    return { contentType: registry.contentType, body: await merged.metrics() };
  }

  private async sessionCounts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of await this.values<Record<string, number>>({ op: 'counts' })) {
      for (const [b, n] of Object.entries(r.value)) out[b] = (out[b] ?? 0) + n;
    }
    return out;
  }

  private adminDeps(): AdminDeps {
    const actions = this.tierActions();
    const local: AdminDeps = {
      invalidateRoute: async (user) => ({ user, dropped: await actions.invalidateRoute(user), kicked: await actions.kick({ user }), tier: false }),
      ...this.localAdminDeps(),
    };
    return this.tier ? tierAdminDeps(local, this.tier, actions) : local;
  }

  private localAdminDeps(): AdminDeps {
    return {
      readiness: () => this.readiness(),
      metrics: () => this.metrics(),
      backends: async () => this.monitor.snapshot(await this.sessionCounts()),
      setMaintenance: async (backend, enabled) => {
        if (!this.monitor.setMaintenance(backend, enabled, `maintenance ${enabled ? 'on' : 'off'} (admin API)`)) return undefined;
        this.broadcastState();
        return this.monitor.snapshot(await this.sessionCounts()).find((b) => b.backend === backend);
      },
      listSessions: async (filter) => (await this.values<SessionInfo[]>({ op: 'sessions', filter }))
        .flatMap((r) => r.value.map((s) => ({ ...s, worker: r.slot.slot, pid: r.slot.worker.process.pid ?? 0 }))),
      kickSessions: async (filter) => ({ kicked: (await this.values<number>({ op: 'kick', filter })).reduce((n, r) => n + r.value, 0) }),
      setTrace: (user, minutes) => this.trace.set(user, minutes),
      listTraces: async () => this.trace.list(),
      routeOf: (user) => explainRoute({
        config: () => this.config,
        directory: () => (this.directory ??= createDirectory(this.config, this.log.child({ module: 'directory' }))),
        pools: this.pools,
        backendState: (name) => this.monitor.snapshot().find((b) => b.backend === name),
        sessionsOf: async (login) => (await this.values<SessionInfo[]>({ op: 'sessions', filter: { user: login } })).flatMap((r) => r.value),
      }, user),
    };
  }
}

/** Cluster primary: no mail listeners here; workers share theirs through node:cluster (round-robin accept in this process). */
export async function runPrimary(config: Config, file: string, logger: Logger, workers: number): Promise<void> {
  const log = logger.child({ role: 'primary' });
  const primary = new Primary(config, file, log, workers);
  await primary.start();
  process.on('SIGHUP', () => { primary.reload().catch((e: Error) => log.error({ err: e.message }, 'reload failed')); });
  const stop = (signal: string) => { primary.stop(signal).catch((e: Error) => { log.error({ err: e.message }, 'shutdown failed'); exitSoon(log, 1); }); };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Worker side: wait for the primary's validated config, run an App with role worker, answer the primary's questions. */
export async function runWorker(): Promise<void> {
  const send = (m: FromWorker) => { if (process.connected) process.send?.(m, undefined, {}, () => undefined); };
  let app: App | undefined;
  let log: Logger | undefined;
  let snapshot: BackendSnapshot[] | undefined;
  let tierDown: { down: string[]; view?: TierViewSnapshot } | undefined;
  let started = false;
  let stopReason: string | undefined;
  let stopping = false;
  const stop = (why: string) => {
    stopReason ??= why;
    if (!app || !log) { process.exit(0); return; }
    if (!started || stopping) return; // drained once start() returns
    stopping = true;
    const l = log;
    drainApp(app, l, why).then(() => exitSoon(l, 0), (e: Error) => { l.error({ err: e.message }, 'shutdown failed'); exitSoon(l, 1); });
  };
  const answer = async (ask: Ask): Promise<unknown> => {
    if (!app) throw new Error('not started');
    const sessions = app.instance.sessions;
    switch (ask.op) {
      case 'metrics': return registry.getMetricsAsJSON();
      case 'sessions': return sessions.list(ask.filter).map((s) => s.info);
      case 'counts': return countSessionsByBackend(sessions);
      case 'kick': return sessions.kick(ask.filter, new ProxyError('ADMIN_KICK'));
      case 'invalidate': return app.instance.invalidateRoute(ask.user);
      case 'kickBackend': app.tierActions().kickBackend(ask.backend, ask.protocol); return true;
      case 'reload': await app.reload(ask.config); log?.info({ event: 'reloaded', gen: ask.gen }, 'worker configuration reloaded'); return true;
      case 'traces': app.instance.traces.replace(ask.list); return true;
      case 'ping': return true;
    }
  };
  // The primary relays SIGTERM/SIGHUP; a terminal's signal to the whole process group must not kill or double-reload a worker.
  process.on('SIGHUP', () => undefined);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary is gone (killed or crashed): nothing new arrives (it did the accepting), so drain what we have and leave.
  // node:cluster exits an unexpectedly disconnected worker right after emitting 'disconnect' unless exitedAfterDisconnect
  // is set; setting it here keeps the sessions to their deadline (should Node change that, the worker just exits at once).
  cluster.worker?.on('disconnect', () => {
    if (cluster.worker) cluster.worker.exitedAfterDisconnect = true;
    if (stopping) return;
    log?.warn('primary gone; draining');
    stop('primary gone');
  });

  const config = await new Promise<{ config: Config; gen: number; slot: number; tierInstanceId?: string }>((resolve) => {
    process.on('message', (raw: unknown) => {
      if (!raw || typeof raw !== 'object' || typeof (raw as { t?: unknown }).t !== 'string') return;
      const m = raw as ToWorker;
      switch (m.t) {
        case 'mailproxy:config': resolve(m); return;
        case 'mailproxy:tierdown': if (app) app.setTierDown(m.down, m.view); else tierDown = m; return;
        case 'mailproxy:state': if (app) app.monitor.applyState(m.snapshot); else snapshot = m.snapshot; return;
        case 'mailproxy:drain': stop('SIGTERM (from primary)'); return;
        case 'mailproxy:req': {
          const { id } = m;
          answer(m).then((value) => send({ t: 'mailproxy:res', id, ok: true, value }), (e: Error) => send({ t: 'mailproxy:res', id, ok: false, error: e.message }));
          return;
        }
      }
    });
    send({ t: 'mailproxy:hello' });
  });
  log = createLogger(config.config.log.level).child({ worker: config.slot });
  try {
    app = new App(config.config, { logger: log, role: 'worker', forwardReport: (route, outcome, identity) => send({ t: 'mailproxy:report', route, outcome, ...(identity !== undefined ? { identity } : {}) }), ...(config.tierInstanceId ? { tierInstanceId: config.tierInstanceId } : {}) });
    if (snapshot) app.monitor.applyState(snapshot);
    if (tierDown) app.setTierDown(tierDown.down, tierDown.view);
    await app.start();
  } catch (e) {
    const error = (e as Error).message;
    log.error({ err: error }, 'worker could not start');
    send({ t: 'mailproxy:failed', error });
    exitSoon(log, 1);
    return;
  }
  started = true;
  if (stopReason) { stop(stopReason); return; }
  send({ t: 'mailproxy:ready', gen: config.gen, bound: app.instance.bound.map((b) => ({ protocol: b.config.protocol, address: b.address, port: b.port, tls: b.config.tls })) });
}
