// Owns one IMAP/POP3 client connection: runs the sans-I/O dialogue's actions against the socket, timers, the one auth path and the relay.
// Must not parse protocol bytes (dialogues do) nor pump bytes itself after login (the Relay does).
import type { Socket } from 'node:net';
import { openGate } from '../health/gate.js';
import { TLSSocket } from 'node:tls';
import type { Config } from '../config/schema.js';
import { resolveRoute } from '../directory/backends.js';
import { ProxyError, disconnectSpec, toProxyError, type DisconnectReason } from '../errors.js';
import type { AcceptedConnection, BackendLoginContext, ClientAction, ClientEvent, ConnectionHandler, Dialogue, DialogueOptions, HandlerDeps, ProtocolModule } from './protocol.js';
import { isTokenCredentials, type Credentials } from '../core/types.js';
import type { Account } from '../directory/directory.js';
import type { LiveSession, SessionInfo } from './sessions.js';
import { upgradeServer } from './starttls.js';
import { admit, backendCredentials, openBackendSession, type BackendSession } from './backend-session.js';
import { nextHop } from './loop-guard.js';
import { isTrustedSource } from '../core/proxy-header.js';
import type { ServerTlsOptions, TlsMaterial } from '../tls/certificates.js';
import { Relay, type RelayResult } from './relay.js';
import { disconnectsTotal, loginsTotal, sessionsActive, tierLimitRefusalsTotal } from '../metrics.js';
import { SessionTrace, traceBackendLogin } from '../trace/session-trace.js';
import { TraceTable } from '../trace/table.js';
import { silentLogger } from '../log.js';
import { Cancel, type CancelSignal } from '../core/cancel.js';

/** Sessions of a service built without a trace table (tests) share this empty one: nothing is ever traced. */
const NO_TRACES = new TraceTable();
/** What a relayed session that is not being traced keeps instead of its own SessionTrace: one shared, always-off trace. */
const OFF_TRACE = new SessionTrace(NO_TRACES, 'imap', silentLogger);
import type { TierLogin } from '../tier/tier.js';

// Client socket listeners are shared functions (the socket carries its session), not closures kept by every session.
const SESSION = Symbol('session');
type Owned = Socket & { [SESSION]?: Session | undefined };
function sessionData(this: Owned, bytes: Buffer): void { this[SESSION]?.clientData(bytes); }
function sessionError(this: Owned, e: NodeJS.ErrnoException): void { this[SESSION]?.clientError(e); }
function sessionClose(this: Owned): void { this[SESSION]?.clientClosed(); }

/** What a session needs: the shared handler deps (minus raw TLS material) and its protocol module. */
export type ProtocolServiceDeps = HandlerDeps & { module: ProtocolModule };

/** A ConnectionHandler that runs a Session per IMAP or POP3 connection. */
export class ProtocolService implements ConnectionHandler {
  private readonly live = new Set<Session>();
  constructor(private readonly deps: ProtocolServiceDeps) {}
  handle(socket: Socket, conn: AcceptedConnection): void {
    const s = new Session(this.deps, socket, conn, this.live);
    this.live.add(s);
    // A bug in one session must not become an unhandled rejection (fatal for the process): log it, close that session.
    s.run().catch((e: unknown) => {
      this.deps.logger.error({ conn: conn.id, err: e instanceof Error ? e.message : String(e) }, 'session failed');
      s.kick(new ProxyError('INTERNAL'));
      socket.destroy();
    });
  }
  async close(): Promise<void> {
    const all = [...this.live];
    for (const s of all) s.kick(new ProxyError('SHUTDOWN'));
    await Promise.all(all.map((s) => s.finished));
  }
}

type Phase = 'new' | 'prelogin' | 'login' | 'relay' | 'closed';

/** The idle-timeout goodbye is the same text for every session of a protocol: made once. */
const idleGoodbyes = new WeakMap<ProtocolModule, string>();
function idleGoodbye(module: ProtocolModule): string {
  let text = idleGoodbyes.get(module);
  if (text === undefined) { text = module.goodbye(new ProxyError('IDLE_TIMEOUT')); idleGoodbyes.set(module, text); }
  return text;
}

/**
 * One connection. A held (relayed) session keeps only what its end needs: the relay, the registry entry (info, kick)
 * and the summary fields; the dialogue, backend login result, timers and abort signal are dropped when the relay starts.
 */
class Session implements LiveSession {
  private socket: Socket;
  private dialogue: Dialogue | undefined;
  private phase: Phase = 'new';
  private readonly config: Config;
  readonly info: SessionInfo;
  private readonly started: number;
  private deadline: unknown;
  private loginAbort: Cancel | undefined;
  private loggedIn: BackendSession | undefined;
  private relay: Relay | undefined;
  private result = 'no login';
  private tierRegistered = false;
  /** Whose failed logins count (penalty, tier entry): a trusted ManageSieve upstream's XCLIENT ADDR, else the peer. */
  private origin: string;
  /** Trace on demand: records nothing unless a trace is active (see src/trace/). */
  private trace: SessionTrace;
  private ended = false;
  private settle: (() => void) | undefined;
  private finishedPromise: Promise<void> | undefined;

  constructor(private readonly deps: ProtocolServiceDeps, socket: Socket, private readonly conn: AcceptedConnection, private readonly live: Set<Session>) {
    this.socket = socket;
    this.origin = conn.client.address;
    this.config = deps.config();
    this.started = deps.clock.now();
    this.info = { id: conn.id, protocol: deps.module.protocol, client: `${conn.client.address}:${conn.client.port}`, phase: 'prelogin', startedAt: this.started };
    this.trace = new SessionTrace(deps.traces ?? NO_TRACES, deps.module.protocol, deps.logger, { conn: conn.id, protocol: deps.module.protocol, client: conn.client.address });
  }

  /** Resolves when the session has ended (made on demand: most sessions are never waited for). */
  get finished(): Promise<void> {
    this.finishedPromise ??= this.ended ? Promise.resolve() : new Promise<void>((r) => { this.settle = r; });
    return this.finishedPromise;
  }

  /** Log lines carry the connection's fields (no child logger per session: it would stay with every held session). */
  private log(level: 'debug' | 'info' | 'error', fields: Record<string, unknown>, msg: string): void {
    const logger = this.deps.logger;
    if (!logger.isLevelEnabled(level)) return;
    logger[level]({ conn: this.conn.id, protocol: this.info.protocol, client: this.conn.client.address, ...fields }, msg);
  }

  private get settings() { return this.config[this.deps.module.protocol]; }

  async run(): Promise<void> {
    const { deps, conn } = this;
    deps.sessions.add(this);
    this.setPhase('prelogin');
    (this.socket as Owned)[SESSION] = this;
    this.socket.on('error', sessionError);
    this.socket.on('close', sessionClose);
    this.deadline = deps.clock.setTimeout(() => this.feed({ kind: 'deadline' }), this.settings.limits.preAuthDeadlineMs);
    const ctx = deps.tls();
    if (conn.listener.tls === 'implicit') {
      if (!ctx) return this.end('CONFIG_INVALID');
      try {
        this.socket.off('close', sessionClose);
        this.socket = await upgradeServer(this.socket, this.tlsOptions(ctx), this.settings.limits.preAuthDeadlineMs);
        (this.socket as Owned)[SESSION] = this;
        this.socket.on('close', sessionClose);
        this.socket.on('error', () => undefined);
      } catch {
        return this.end('TLS_FAILED');
      }
    }
    this.dialogue = deps.module.createDialogue({
      tls: conn.listener.tls === 'implicit',
      starttls: conn.listener.tls === 'starttls' && !!ctx,
      requireTlsForAuth: this.settings.requireTlsForAuth,
      limits: this.settings.limits,
      ...(this.settings.greeting ? { greeting: this.settings.greeting } : {}),
      ...this.oauthOptions(),
      // ManageSieve takes the hop count from a trusted upstream's XCLIENT (IMAP's comes in ID, judged at login).
      ...(deps.module.protocol === 'sieve' && isTrustedSource(conn.client.address, this.config.loopProtection.trustedNetworks) ? { trustedUpstream: true } : {}),
    });
    this.socket.on('data', sessionData);
    this.socket.resume(); // a PROXY header reader may have paused it
    this.apply(this.dialogue.start());
  }

  /** OAuth mechanisms and challenge details when oauth is configured; ManageSieve's announced SIEVE list. */
  private oauthOptions(): Pick<DialogueOptions, 'tokenMechanisms' | 'oauthChallenge' | 'sieveExtensions'> {
    const o = this.config.oauth;
    const sieve = this.deps.module.protocol === 'sieve' ? this.config.sieve.sieveExtensions : undefined;
    return {
      ...(o ? { tokenMechanisms: o.mechanisms, oauthChallenge: { ...(o.scope ? { scope: o.scope } : {}), ...(o.openidConfiguration ? { openidConfiguration: o.openidConfiguration } : {}) } } : {}),
      ...(sieve ? { sieveExtensions: sieve } : {}),
    };
  }

  clientData(bytes: Buffer): void { this.trace.fromClient(bytes); this.feed({ kind: 'data', bytes }); }

  clientError(e: NodeJS.ErrnoException): void { this.log('debug', { phase: this.phase, err: e.code ?? e.message }, 'client socket error'); }

  clientClosed(): void {
    if (this.phase === 'relay' || this.phase === 'closed') return;
    this.loginAbort?.abort();
    this.finish('CLIENT_CLOSED', 'client');
  }

  private feed(event: ClientEvent): void {
    if (this.phase === 'closed' || this.phase === 'relay') return;
    // The deadline can pass during an implicit-TLS handshake, before any dialogue exists.
    if (!this.dialogue) return this.end(event.kind === 'deadline' ? 'PREAUTH_TIMEOUT' : event.kind === 'kick' ? event.error.code : 'CLOSED');
    let actions: ClientAction[];
    try { actions = this.dialogue.step(event); } catch (e) {
      this.log('error', { err: (e as Error).message }, 'dialogue failed');
      return this.end('INTERNAL');
    }
    this.apply(actions);
  }

  private apply(actions: ClientAction[]): void {
    for (const a of actions) {
      if (this.phase === 'closed') return;
      switch (a.kind) {
        case 'send': this.trace.toClient(a.bytes); this.socket.write(a.bytes); break;
        case 'start-tls': this.startTls(); return;
        case 'login': this.login(a.credentials, a.clientId); break;
        case 'relay': this.startRelay(a.pending); return;
        case 'close': this.end(a.reason); return;
      }
    }
  }

  /** Handshake options for this listener's protocol; a refused ALPN offer (ALPACA defence) is logged. */
  private tlsOptions(material: TlsMaterial): ServerTlsOptions {
    return material.serverOptions(this.conn.listener.protocol, (r) => this.log('info', { phase: 'tls', alpnOffered: r.offered.slice(0, 8).map((p) => p.slice(0, 32)), alpnWanted: r.wanted }, 'TLS handshake refused: ALPN offer without this protocol'));
  }

  private startTls(): void {
    const ctx = this.deps.tls();
    if (!ctx) return this.end('CONFIG_INVALID');
    const raw = this.socket;
    raw.off('data', sessionData);
    raw.off('close', sessionClose);
    raw.pause();
    upgradeServer(raw, this.tlsOptions(ctx), this.settings.limits.preAuthDeadlineMs).then((tls) => {
      this.socket = tls;
      (tls as Owned)[SESSION] = this;
      tls.on('error', () => undefined);
      tls.on('close', sessionClose);
      tls.on('data', sessionData);
      this.feed({ kind: 'tls-ready' });
    }, () => this.finish('TLS_FAILED', 'client'));
  }

  private login(credentials: Credentials, clientId?: Record<string, string>): void {
    this.setPhase('login');
    // Only the sieve dialogue's XCLIENT (offered to trusted upstreams alone) names the client; an IMAP ID's x- fields never count.
    this.origin = (this.deps.module.protocol === 'sieve' ? clientId?.['x-originating-ip'] : undefined) ?? this.conn.client.address;
    this.trace.identify(credentials.user);
    // Bytes behind the login command are for the backend: stop reading (TCP holds them) until the relay or a failure.
    this.socket.pause();
    // A client that sent its commands and half-closed (`printf … | nc -N`) still gets the login reply and what follows:
    // its FIN no longer ends our side (net's default); the relay passes it on, a failed login closes after its reply.
    this.socket.allowHalfOpen = true;
    this.loginAbort = new Cancel();
    const started = this.deps.clock.now();
    this.authenticateAndConnect(credentials, clientId, this.loginAbort).then((loggedIn) => {
      if (this.phase === 'closed') { loggedIn.socket.destroy(); return; }
      this.loggedIn = loggedIn;
      this.result = 'ok';
      // With the tier, the session admit already cleared the penalty (in the same Redis call).
      if (!this.deps.tier) this.deps.penalty.success(this.origin);
      loginsTotal.inc({ protocol: this.deps.module.protocol, result: 'ok' });
      this.log('info', { phase: 'login', user: this.info.user, backend: this.info.backend, mechanism: credentials.mechanism, ms: Math.round(this.deps.clock.now() - started) }, 'login ok');
      this.trace.event('trace: login ok', { user: this.info.user, backend: this.info.backend, mechanism: credentials.mechanism });
      this.trace.loggedIn();
      this.feed({ kind: 'login-ok', text: loggedIn.text });
    }, async (e: unknown) => {
      const err = toProxyError(e, 'INTERNAL');
      this.result = err.spec.metricLabel;
      loginsTotal.inc({ protocol: this.deps.module.protocol, result: err.spec.metricLabel });
      const limits = this.settings.limits;
      const guess = err.code === 'AUTH_FAILED' || err.code === 'BACKEND_AUTH_FAILED' || err.code === 'AUTHZ_UNSUPPORTED';
      const tier = this.deps.tier;
      let delay = 0;
      if (guess && this.phase !== 'closed') {
        delay = tier
          ? await tier.penalty.failure(this.origin, credentials.user, limits.authFailureDelayMs, limits.authFailureMaxDelayMs)
          : this.deps.penalty.failure(this.origin, limits.authFailureDelayMs, limits.authFailureMaxDelayMs);
      }
      this.log('info', { phase: 'login', user: this.info.user ?? credentials.user.slice(0, 256), backend: this.info.backend, code: err.code, detail: err.detail, ...(delay ? { delayMs: delay } : {}) }, 'login failed');
      this.trace.event('trace: login failed', { code: err.code, ...(err.detail ? { detail: err.detail } : {}) });
      if (this.phase === 'closed') return;
      this.setPhase('prelogin');
      const deliver = () => {
        this.feed({ kind: 'login-failed', error: err });
        if (this.phase !== 'prelogin') return;
        this.socket.allowHalfOpen = false;
        // The client's FIN came during the login: nothing more will come, close after the reply.
        if (this.socket.readableEnded) this.socket.end(); else this.socket.resume();
      };
      if (delay > 0) this.deps.clock.setTimeout(deliver, delay); else deliver();
    });
  }

  private async authenticateAndConnect(credentials: Credentials, clientId: Record<string, string> | undefined, signal: CancelSignal): Promise<BackendSession> {
    const { deps, config } = this;
    const auth = await deps.directory().authenticate(credentials);
    if (!auth.ok) throw new ProxyError('AUTH_FAILED');
    // The client left during the lookup: no route, tier registration or backend login on its behalf.
    if (signal.aborted) throw new ProxyError('CLIENT_GONE', 'during the directory lookup');
    const account = auth.account;
    this.info.user = account.login;
    if (account.mail !== undefined) this.info.mail = account.mail;
    this.trace.identify(credentials.user, account.login);
    const pooled = await deps.pools.resolve(config, account.host, account.login, deps.module.protocol);
    const wanted = pooled ? pooled.route : resolveRoute(config, account.host, deps.module.protocol);
    // Loop protection (Dovecot's login proxy TTL): an upstream proxy we trust says how many hops are left.
    const lp = config.loopProtection;
    const ttl = clientId?.['x-proxy-ttl'];
    // Whether the sender is trusted only matters when it sent a hop count (a CIDR match per login otherwise).
    const hop = nextHop(ttl, ttl !== undefined && isTrustedSource(this.conn.client.address, lp.trustedNetworks), lp.proxyTtl);
    if (!hop.ok) throw new ProxyError('ROUTE_LOOP', `hop count spent (x-proxy-ttl ${hop.ttl}) for backend ${wanted.backend}`);
    // A pool member was chosen with health applied already; the gate would refuse a draining member its users' sessions.
    const route = pooled ? admit(openGate, pooled.route) : admit(deps.gate, wanted);
    if (pooled) this.info.pool = pooled.pool;
    this.info.backend = route.backend;
    if (route.routedFor !== undefined) this.info.routedFor = route.routedFor;
    if (deps.tier) await this.registerInTier(deps.tier, account, route.backend, credentials.user);
    const identity = backendIdentity(config, account, credentials);
    const forwardClient = route.trustsProxy && route.forwardClientAddress === 'native';
    const clientTls = this.socket instanceof TLSSocket;
    try {
      const opened = await openBackendSession(deps, route, config.backendLogin, {
        client: this.conn.client,
        clientTls,
        signal,
        login: (r) => traceBackendLogin(deps.module.createBackendLogin({
          ...identity, route: r, client: this.conn.client, clientTls, sessionId: this.conn.id, forwardClient, ...(clientId ? { clientId } : {}), proxyTtl: hop.next,
        }), this.trace),
      });
      if (opened.identity !== undefined) this.info.backendIdentity = opened.identity;
      return opened;
    } catch (e) {
      this.releaseFromTier();
      throw e;
    }
  }

  /** The tier's session registry and limits (tier-wide, or this process's own while Redis is away). */
  private async registerInTier(tier: TierLogin, account: Account, backend: string, typedUser: string): Promise<void> {
    // The password was right: the penalty of this address and name is cleared in the same call (locally at once).
    const clear = tier.penalty.clearLocal(this.origin, typedUser);
    const r = await tier.sessions.admit({ id: this.conn.id, protocol: this.deps.module.protocol, user: account.login, ...(account.mail !== undefined ? { mail: account.mail } : {}),
      backend, address: this.origin, client: this.info.client, startedAt: this.started }, clear);
    if (!r.ok) {
      tierLimitRefusalsTotal.inc({ protocol: this.deps.module.protocol, limit: r.limit });
      throw new ProxyError('SESSION_LIMIT', `tier session limit per ${r.limit} reached (${r.count}, ${r.source})`);
    }
    this.tierRegistered = true;
  }

  private releaseFromTier(): void {
    if (!this.tierRegistered) return;
    this.tierRegistered = false;
    this.deps.tier?.sessions.release(this.conn.id);
  }

  private startRelay(pending: Buffer): void {
    const loggedIn = this.loggedIn;
    if (!loggedIn) return this.end('INTERNAL');
    this.deps.clock.clearTimeout(this.deadline);
    this.setPhase('relay');
    this.socket.off('data', sessionData);
    this.socket.off('close', sessionClose);
    this.socket.off('error', sessionError);
    (this.socket as Owned)[SESSION] = undefined;
    this.relay = new Relay(this.socket, loggedIn.socket, {
      protocol: this.deps.module.protocol,
      idleTimeoutMs: this.settings.limits.idleTimeoutMs,
      pendingUp: pending,
      pendingDown: loggedIn.leftover,
      idleGoodbye: idleGoodbye(this.deps.module),
      clock: this.deps.clock,
      owner: this,
    });
    // The relay owns both sockets from here; what only the login needed goes.
    this.dialogue = undefined;
    this.loggedIn = undefined;
    this.loginAbort = undefined;
    this.deadline = undefined;
    this.trace.tapRelay(this.relay, this.socket);
    // Not traced by now: it never will be (a trace matches during login), so a held session keeps no trace state.
    if (!this.trace.on) this.trace = OFF_TRACE;
    this.relay.start();
  }

  /** The relay's end (both sides gone): the session's summary with its byte counts. */
  relayDone(r: RelayResult): void {
    this.finish(r.reason, r.closedBy, { bytesUp: r.bytesUp, bytesDown: r.bytesDown, ...(r.detail ? { detail: r.detail } : {}) });
  }

  /** Close from outside (shutdown, kick, backend down) with the protocol's goodbye. */
  kick(error: ProxyError): void {
    if (this.phase === 'closed') return;
    if (this.relay) return this.relay.stop(error.code, this.deps.module.goodbye(error));
    this.feed({ kind: 'kick', error });
  }

  private end(reason: DisconnectReason): void {
    if (this.phase === 'closed') return;
    this.loginAbort?.abort();
    const s = this.socket;
    s.end();
    this.deps.clock.setTimeout(() => s.destroy(), 2000);
    this.finish(reason, 'proxy');
  }

  /** The one end of a session: registry, metric and the single summary record (with byte counts after a relay). */
  private finish(reason: DisconnectReason, closedBy: string, extra?: { bytesUp: number; bytesDown: number; detail?: string }): void {
    if (this.phase === 'closed') return;
    this.setPhase('closed');
    this.deps.clock.clearTimeout(this.deadline);
    this.loggedIn?.socket.destroy();
    this.deps.sessions.remove(this.conn.id);
    this.releaseFromTier();
    const spec = disconnectSpec(reason);
    disconnectsTotal.inc({ protocol: this.deps.module.protocol, reason: spec.metricLabel });
    this.trace.event('trace: session end', { reason: spec.logReason, closedBy });
    this.log('info', { phase: 'end', summary: true, user: this.info.user, backend: this.info.backend, result: this.result, ...extra, closedBy, reason: spec.logReason, durationMs: this.deps.clock.now() - this.started }, 'session');
    this.live.delete(this);
    this.ended = true;
    this.settle?.();
  }

  private setPhase(p: Phase): void {
    const old = this.phase;
    if (old === p) return;
    const protocol = this.deps.module.protocol;
    if (old !== 'new' && old !== 'closed') sessionsActive.dec({ protocol, phase: old });
    if (p !== 'closed' && p !== 'new') { sessionsActive.inc({ protocol, phase: p }); this.info.phase = p; }
    this.phase = p;
  }
}

/**
 * Who the proxy logs in as at the backend: the master user (backendLogin.mode master, or oauth.backendLogin master for
 * token logins), the user's own token with the client's mechanism, or the user's own password.
 */
export function backendIdentity(config: Config, account: Account, credentials: Credentials): Pick<BackendLoginContext, 'user' | 'password' | 'token'> {
  if (!isTokenCredentials(credentials)) return backendCredentials(config.backendLogin, account.login, credentials.password);
  if (config.oauth?.backendLogin === 'master') return backendCredentials({ ...config.backendLogin, mode: 'master' }, account.login, '');
  return { user: account.login, password: '', token: { mechanism: credentials.mechanism, token: credentials.token } };
}
