// Owns the client side shared by submission and inbound: smtp-server instances fed with accepted sockets, TLS modes, per-connection state, the session registry and shutdown.
// Must not know about directories, routes or backends; the services plug their handlers in through FrontendSpec.
import os from 'node:os';
import type net from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { TLS_SOCKET_OPTIONS } from 'smtp-server/lib/smtp-connection.js';
import { ProxyError } from '../../errors.js';
import { disconnectsTotal, sessionsActive } from '../../metrics.js';
import type { Logger } from '../../log.js';
import type { Config } from '../../config/schema.js';
import type { Directory } from '../../directory/directory.js';
import type { BackendGate } from '../../health/gate.js';
import type { AcceptedConnection, ConnectionHandler } from '../protocol.js';
import type { SessionInfo, SessionRegistry } from '../sessions.js';
import { REPLY, catalogueReply } from './replies.js';
import { checkEnvelopeAddress } from './envelope.js';
import { upgradeServer } from '../starttls.js';
import { serverTlsOptions, type TlsMaterial as FullTls } from '../../tls/certificates.js';
import type { AuthPenalty } from '../auth-penalty.js';
import type { TierLogin } from '../../tier/tier.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { netDial, type Dial } from '../backend-connect.js';
import type { BackendSessionDeps } from '../backend-session.js';
import type { BackendGuard } from '../backend-guard.js';
import type { BackendLimiter } from '../backend-limit.js';
import { SessionTrace } from '../../trace/session-trace.js';
import { SmtpTraceTap } from '../../trace/smtp-tap.js';
import { TraceTable } from '../../trace/table.js';
import { isTrustedSource } from '../../core/proxy-header.js';
import { acceptUpstreamXclient, connectionById, type UpstreamInfo } from './upstream-xclient.js';
import { LineDeadline } from './line-deadline.js';

/** Default PEM pair (what smtp-server needs), plus SNI and ALPN when it is the instance's full material (src/tls). */
export type TlsMaterial = { key: Buffer; cert: Buffer; SNICallback?: FullTls['SNICallback']; serverOptions?: FullTls['serverOptions'] };
/** A value, or a getter read at each new connection (Instance.reload swaps config, directory and TLS material). */
export type Source<T> = T | (() => T);

export interface SmtpServiceDeps {
  config: Source<Config>;
  directory: Source<Directory>;
  gate: BackendGate;
  sessions: SessionRegistry;
  logger: Logger;
  secureContext?: Source<TlsMaterial | undefined>;
  /** Pool affinity (accounts whose host value names a pool); without it pool names are routed as plain host names. */
  pools?: import('../../pools/pool-router.js').PoolRouter;
  /** Failed-login penalty per client address (shared with IMAP/POP3); a private one when absent. */
  penalty?: AuthPenalty;
  /** With `tier:`: the failed-login penalty (per address and per login name) and the session registry with limits, shared by the tier. */
  tier?: TierLogin;
  /** Time, timers and backend dialling (fakes in unit tests); real ones when absent. */
  clock?: Clock;
  dial?: Dial;
  /** Loop protection and backend sourceAddresses (the Instance's); none when absent. */
  guard?: BackendGuard;
  /** The per-backend cap on backend connection attempts in flight (the Instance's); none when absent. */
  limiter?: BackendLimiter;
  /** Users traced on demand in this process; nothing is traced when absent. */
  traces?: TraceTable;
}

/** The backend-session pipeline's dependencies for an SMTP service. */
export function pipelineDeps(deps: SmtpServiceDeps): BackendSessionDeps {
  return { gate: deps.gate, clock: deps.clock ?? systemClock, dial: deps.dial ?? netDial, ...(deps.guard ? { guard: deps.guard } : {}), ...(deps.limiter ? { limiter: deps.limiter } : {}) };
}

/** The name this proxy greets with, says in EHLO/LHLO and writes in Received headers. */
export const smtpHostname = (config: Config): string => config.smtp.hostname ?? os.hostname();

// smtp-server builds its STARTTLS socket from the server options named in this exported list only; ALPNCallback is not
// among them, so without this a STARTTLS handshake would never see the ALPN check (ALPACA) that implicit TLS gets.
if (!TLS_SOCKET_OPTIONS.includes('ALPNCallback')) TLS_SOCKET_OPTIONS.push('ALPNCallback');

/** Services built without a trace table (tests) share this empty one: nothing is ever traced. */
const NO_TRACES = new TraceTable();

const read = <T>(s: Source<T>): T => (typeof s === 'function' ? (s as () => T)() : s);

/** What the frontend keeps per client connection; services extend it. A connection keeps the config it started with. */
export interface ConnState {
  conn: AcceptedConnection;
  info: SessionInfo;
  log: Logger;
  config: Config;
  directory: Directory;
  tls: TlsMaterial | undefined;
  /** The service's clock (transaction timings, delays). */
  clock: Clock;
  /** Trace on demand (src/trace/): records nothing unless this session's user is traced. */
  trace: SessionTrace;
  /** Only for a client in loopProtection.trustedNetworks (an upstream proxy): what its XCLIENT said (hop count, client). */
  upstream?: UpstreamInfo;
}

/**
 * The client this connection speaks for: the one a trusted upstream forwarded (XCLIENT ADDR/PORT), else the connection's
 * peer. Failed-login penalties, the tier's session entry, backends and the session summary all count this one, so the
 * clients behind one upstream never share a penalty.
 */
export function clientOf(state: Pick<ConnState, 'conn' | 'upstream'>): AcceptedConnection['client'] {
  const forwarded = state.upstream?.client;
  return forwarded ? { ...state.conn.client, ...forwarded } : state.conn.client;
}

/** A trusted upstream may use XCLIENT (upstream-xclient.ts); everyone else never sees it. */
function withUpstream(state: ConnState, disabled: string[]): string[] {
  return state.upstream ? disabled.filter((c) => c !== 'XCLIENT') : disabled;
}

type Handler<K extends 'onMailFrom' | 'onRcptTo' | 'onData' | 'onAuth', S> =
  NonNullable<SMTPServerOptions[K]> extends (a: infer A, s: SMTPServerSession, cb: infer C) => void ? (state: S, arg: A, session: SMTPServerSession, callback: C) => void : never;

/** Handlers a service plugs in; `state` is the connection's state object. */
export interface FrontendSpec<S extends ConnState> {
  /** Listener protocol (registry, metrics). */
  protocol: 'submission' | 'smtp' | 'lmtp';
  /** Extra smtp-server options (size, maxRecipients, resolver…) for a given config. */
  options(config: Config): Partial<SMTPServerOptions>;
  createState(base: ConnState): S;
  /** Commands to switch off for this session, given whether it is on TLS already. */
  disabledCommands(state: S, secure: boolean): string[];
  onMailFrom: Handler<'onMailFrom', S>;
  onRcptTo: Handler<'onRcptTo', S>;
  onData: Handler<'onData', S>;
  onAuth?: Handler<'onAuth', S>;
  /** The client connection is gone: release backend connections. */
  onClose(state: S): void;
}

interface ServerGen { server: SMTPServer; config: Config; tls: TlsMaterial | undefined }

function clientLabel(conn: AcceptedConnection): string {
  return conn.client.address.includes(':') ? `[${conn.client.address}]:${conn.client.port}` : `${conn.client.address}:${conn.client.port}`;
}

function replyErr(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

/** Moves an SMTP/LMTP session to `phase`, keeping mailproxy_sessions_active in step (session.ts does so for IMAP/POP3). */
export function setPhase(state: ConnState, phase: SessionInfo['phase']): void {
  const { info } = state;
  if (info.phase === phase) return;
  sessionsActive.dec({ protocol: info.protocol, phase: info.phase });
  sessionsActive.inc({ protocol: info.protocol, phase });
  info.phase = phase;
}

/** What answerBeforeEnd reads of smtp-server's connection (not in its types): the socket it talks on, its command parser. */
type ServerConnection = { id: string; _socket?: unknown; _parser?: Writable | false; close(): void };

/**
 * A client that sends its commands and half-closes (`printf 'EHLO…QUIT\r\n' | nc -N host 587`) gets every reply, as
 * from Postfix: net would end our side at its FIN (the listeners accept with allowHalfOpen off), before smtp-server
 * answered what it had read (and smtp-server writes only to a socket whose readyState is 'open', not 'writeOnly').
 * Our side ends once smtp-server's parser has run every command it read (its 'finish'). After STARTTLS, the same
 * for the TLS socket (onSecure); the plain one under it just ends.
 */
function answerBeforeEnd(server: SMTPServer, id: string, socket: net.Socket | Duplex): void {
  socket.allowHalfOpen = true;
  socket.once('end', () => {
    const c = connectionById(server.connections, id) as ServerConnection | undefined;
    const parser = c?._parser;
    if (!c || !parser || c._socket !== socket || parser.writableFinished) { socket.end(); return; }
    // smtp-server writes a reply only while readyState is 'open'; after the client's FIN net says 'writeOnly'.
    Object.defineProperty(socket, 'readyState', { configurable: true, get: () => (socket.writable ? 'open' : 'closed') });
    // 'finish' follows the last command's reply; a final line without CRLF runs in that same event, so wait a turn.
    parser.once('finish', () => setImmediate(() => c.close()));
  });
}

/** A ConnectionHandler running smtp-server dialogues on sockets the listener accepted. */
export function createFrontend<S extends ConnState>(deps: SmtpServiceDeps, spec: FrontendSpec<S>): ConnectionHandler {
  const { logger, sessions } = deps;
  const clock = deps.clock ?? systemClock;
  const states = new Map<string, S>();
  const taps = new Map<string, SmtpTraceTap>();
  const lineDeadlines = new Map<string, LineDeadline>();
  /** Current smtp-server per TLS mode; older generations keep serving the connections they took. */
  const current = new Map<'plain' | 'implicit', ServerGen>();
  const generations = new Set<ServerGen>();
  let closing = false;
  const shutdownReply = catalogueReply('SHUTDOWN');

  const stateOf = (session: SMTPServerSession): S | undefined => states.get(session.id);

  const buildServer = (mode: 'plain' | 'implicit', config: Config, material: TlsMaterial | undefined): SMTPServer => {
    const tls = material ? { key: material.key, cert: material.cert, minVersion: config.tls?.minVersion ?? 'TLSv1.2', ...(config.tls?.ciphers ? { ciphers: config.tls.ciphers } : {}), ...(material.SNICallback ? { SNICallback: material.SNICallback } : {}) } : {};
    // STARTTLS: the same ALPN check as implicit TLS and IMAP/POP3 (src/tls/certificates.ts; off with tls.strictAlpn false).
    // Called per handshake without the connection, so the refusal is logged without its conn id (the session's end line has it).
    const alpn = mode === 'plain' ? material?.serverOptions?.(spec.protocol, (r) => logger.info({ phase: 'tls', protocol: spec.protocol, alpnOffered: r.offered.slice(0, 8).map((p) => p.slice(0, 32)), alpnWanted: r.wanted }, 'TLS handshake refused: ALPN offer without this protocol')).ALPNCallback : undefined;
    const server = new SMTPServer({
      ...tls,
      ...(alpn ? { ALPNCallback: alpn } : {}),
      // Implicit TLS (RFC 8314 §3.3): handle() completes the handshake (SNI, ALPN check) before handing the socket over.
      ...(mode === 'implicit' ? { secure: true } : {}),
      name: smtpHostname(config),
      logger: false,
      heloResponse: '%s Hello %s',
      // None is offered (src/proxy/smtp/envelope.ts refuses their parameters with 555): a client that saw one would use
      // it and have its mail refused. REQUIRETLS (RFC 8689), which smtp-server offers on TLS sessions unless hidden, would
      // also be a promise about the hops after ours that the proxy cannot keep.
      hideSMTPUTF8: true,
      hideDSN: true,
      hideREQUIRETLS: true,
      // smtp-server has one client inactivity timer, so it also bounds pauses inside DATA;
      // dataTimeoutMs bounds the backend side (stalled writes, the reply after the final dot).
      socketTimeout: config.smtp.commandTimeoutMs,
      closeTimeout: 1000,
      // RFC 5321 §4.5.3.1.4 allows 512 octets per command; extensions (AUTH PLAIN, SIZE, BODY) need some room.
      maxCommandLength: 4096,
      disabledCommands: ['STARTTLS', 'AUTH', 'XCLIENT', 'XFORWARD', 'WIZ', 'SHELL', 'KILL'],
      // Switched on per session, for trusted upstream proxies only (withUpstream).
      useXClient: true,
      ...spec.options(config),
      onConnect(session, callback) {
        const state = stateOf(session);
        if (!state || closing) return callback(replyErr(shutdownReply.code, shutdownReply.text));
        session.disabledCommands = withUpstream(state, spec.disabledCommands(state, session.secure));
        callback();
      },
      onSecure(socket, session, callback) {
        const state = stateOf(session);
        if (state) session.disabledCommands = withUpstream(state, spec.disabledCommands(state, true));
        taps.get(session.id)?.attach(socket);
        lineDeadlines.get(session.id)?.attach(socket);
        // The TLS socket inherited allowHalfOpen from the plain one: it needs the same end handling.
        answerBeforeEnd(server, session.id, socket);
        callback();
      },
      onAuth(auth, session, callback) {
        const state = stateOf(session);
        if (!state || !spec.onAuth) return callback(null, {});
        spec.onAuth(state, auth, session, callback);
      },
      onMailFrom(address, session, callback) {
        const state = stateOf(session);
        if (!state) return callback(replyErr(421, shutdownReply.text));
        // smtp-server decodes command lines as UTF-8: malformed bytes arrive as U+FFFD, and passed on they would name
        // another mailbox. Refused here, before any backend hears of it (an address really holding U+FFFD goes too).
        if (address.address.includes('\uFFFD')) return callback(replyErr(REPLY.badSenderSyntax.code, REPLY.badSenderSyntax.text));
        const refused = checkEnvelopeAddress(address, 'mail');
        if (refused) return callback(replyErr(refused.code, refused.text));
        spec.onMailFrom(state, address, session, callback);
      },
      onRcptTo(address, session, callback) {
        const state = stateOf(session);
        if (!state) return callback(replyErr(421, shutdownReply.text));
        const refused = checkEnvelopeAddress(address, 'rcpt');
        if (refused) return callback(replyErr(refused.code, refused.text));
        spec.onRcptTo(state, address, session, callback);
      },
      onData(stream, session, callback) {
        const state = stateOf(session);
        if (!state) return callback(replyErr(421, shutdownReply.text));
        spec.onData(state, stream, session, callback);
      },
      onClose(session) {
        finish(session.id, 'closed');
      },
    });
    // Connection-level failures (TLS handshake, resets) surface here; they end that connection only.
    server.on('error', (err: Error & { code?: string }) => {
      logger.debug({ phase: 'smtp', protocol: spec.protocol, err: err.message, code: err.code }, 'smtp connection error');
    });
    return server;
  };

  const serverFor = (mode: 'plain' | 'implicit', config: Config, tls: TlsMaterial | undefined): SMTPServer => {
    const gen = current.get(mode);
    // Same material = same buffers (a getter may wrap them in a new object each call).
    if (gen && gen.config === config && gen.tls?.key === tls?.key && gen.tls?.cert === tls?.cert) return gen.server;
    // Retire generations nobody uses any more (a reload happened since).
    for (const g of generations) if (g.server.connections.size === 0 && g !== gen) generations.delete(g);
    const next = { server: buildServer(mode, config, tls), config, tls };
    current.set(mode, next);
    generations.add(next);
    return next.server;
  };

  const finish = (id: string, reason: string): void => {
    const state = states.get(id);
    if (!state) return;
    states.delete(id);
    taps.get(id)?.close();
    taps.delete(id);
    lineDeadlines.get(id)?.detach();
    lineDeadlines.delete(id);
    sessions.remove(id);
    state.trace.event('trace: session end', { reason });
    disconnectsTotal.inc({ protocol: spec.protocol, reason });
    sessionsActive.dec({ protocol: spec.protocol, phase: state.info.phase });
    // One summary record per session, as for IMAP/POP3 (transactions and AUTH outcomes have their own lines).
    const { info } = state;
    state.log.info({ phase: 'end', summary: true, client: clientOf(state).address, ...(state.upstream?.client ? { upstream: state.conn.client.address } : {}), ...(info.user ? { user: info.user } : {}), ...(info.backend ? { backend: info.backend } : {}), reason, durationMs: clock.now() - info.startedAt }, 'session');
    try {
      spec.onClose(state);
    } catch (e) {
      state.log.warn({ err: (e as Error).message }, 'smtp close handler failed');
    }
  };

  /** RFC 5321 §3.8: the server closes with 421; a transaction in progress is abandoned (the client retries it). */
  const kick = (id: string, error: ProxyError): void => {
    // A catalogue reply that closes (421: shutdown, operator kick, pool move) is said as is; others name the reason.
    const own = catalogueReply(error.code);
    const text = own.code === 421 ? own.text : `4.3.0 Closing connection (${error.spec.logReason}), please try again later`;
    for (const { server } of generations) {
      for (const c of server.connections) {
        if (c.id !== id) continue;
        states.get(id)?.log.info({ reason: error.spec.logReason }, 'smtp session kicked');
        c.send(421, text);
        c.close();
        return;
      }
    }
  };

  return {
    handle(socket: net.Socket, conn: AcceptedConnection): void {
      const implicit = conn.listener.tls === 'implicit';
      const config = read(deps.config);
      const tls = deps.secureContext === undefined ? undefined : read(deps.secureContext);
      if (closing || (implicit && !tls)) {
        if (!implicit) socket.end(`${shutdownReply.code} ${shutdownReply.text}\r\n`);
        else socket.destroy();
        if (implicit && !closing) logger.error({ conn: conn.id, phase: 'smtp' }, 'implicit TLS listener without a certificate');
        return;
      }
      const info: SessionInfo = { id: conn.id, protocol: spec.protocol, client: clientLabel(conn), phase: 'prelogin', startedAt: clock.now() };
      sessionsActive.inc({ protocol: spec.protocol, phase: info.phase });
      const log = logger.child({ conn: conn.id, protocol: spec.protocol });
      const trace = new SessionTrace(deps.traces ?? NO_TRACES, 'smtp', logger, { conn: conn.id, protocol: spec.protocol, client: conn.client.address });
      const upstream = isTrustedSource(conn.client.address, config.loopProtection.trustedNetworks);
      const state = spec.createState({ conn, info, log, config, directory: read(deps.directory), tls, clock, trace, ...(upstream ? { upstream: {} } : {}) });
      states.set(conn.id, state);
      // Before smtp-server reads: the tap's listener sees each chunk before smtp-server answers it.
      const tap = new SmtpTraceTap(trace);
      taps.set(conn.id, tap);
      // One byte a second never trips smtp-server's inactivity timer: each line must be whole within commandTimeoutMs.
      const lines = new LineDeadline(config.smtp.commandTimeoutMs, clock, () => kick(conn.id, new ProxyError('IDLE_TIMEOUT', `a line took longer than ${config.smtp.commandTimeoutMs} ms`)));
      lineDeadlines.set(conn.id, lines);
      sessions.add({ info, kick: (e) => kick(conn.id, e) });
      // Safety net: smtp-server reports every close through onClose, but a socket that dies
      // before smtp-server takes it (or while TLS is set up) must not leak registry entries.
      socket.once('close', () => setImmediate(() => finish(conn.id, 'closed')));
      const server = serverFor(implicit ? 'implicit' : 'plain', config, tls);
      const options = {
        id: conn.id,
        remoteAddress: conn.client.address,
        remotePort: conn.client.port,
        localAddress: conn.client.localAddress,
        localPort: conn.client.localPort,
      };
      const start = (s: net.Socket): void => {
        tap.attach(s);
        lines.attach(s);
        answerBeforeEnd(server, conn.id, s);
        server.connect(s, options);
        if (!state.upstream) return;
        const c = connectionById(server.connections, conn.id);
        // smtp-server adds the connection synchronously in connect(); without it XCLIENT simply stays switched off.
        if (c) acceptUpstreamXclient(c, state.upstream); else { log.warn({ phase: 'smtp' }, 'smtp-server connection not found: XCLIENT not offered'); delete state.upstream; }
      };
      if (!implicit || !tls) { start(socket); return; }
      // smtp-server has no ALPN hook, so implicit TLS is the same handshake as IMAP/POP3 (SNI + ALPACA check).
      const opts = serverTlsOptions(tls, conn.listener.protocol, (r) => log.info({ phase: 'tls', alpnOffered: r.offered.slice(0, 8).map((p) => p.slice(0, 32)), alpnWanted: r.wanted }, 'TLS handshake refused: ALPN offer without this protocol'));
      upgradeServer(socket, opts, config.smtp.commandTimeoutMs).then(start, () => {
        log.debug({ phase: 'tls' }, 'TLS handshake failed');
        finish(conn.id, 'tls_failed');
      });
    },

    async close(): Promise<void> {
      closing = true;
      const error = new ProxyError('SHUTDOWN');
      for (const id of [...states.keys()]) kick(id, error);
      const deadline = Date.now() + 5000;
      while (states.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
  };
}
