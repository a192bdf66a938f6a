// Owns the contract between the Session (I/O) and protocol modules (sans-I/O dialogues and backend logins).
// Must not contain protocol specifics or touch sockets, timers, the directory or health state.
import type { Socket } from 'node:net';
import type { DisconnectReason, ProxyError } from '../errors.js';
import type { ClientEndpoint, Credentials, TokenMechanism } from '../core/types.js';
import type { Clock } from '../core/clock.js';
import type { Config, LimitsConfig, ListenerConfig } from '../config/schema.js';
import type { Route } from '../directory/backends.js';
import type { Directory } from '../directory/directory.js';
import type { BackendGate } from '../health/gate.js';
import type { Logger } from '../log.js';
import type { Dial } from './backend-connect.js';
import type { SessionRegistry } from './sessions.js';
import type { AuthPenalty } from './auth-penalty.js';
import type { TraceTable } from '../trace/table.js';
import type { TlsMaterial } from '../tls/certificates.js';
import type { BackendGuard } from './backend-guard.js';
import type { BackendLimiter } from './backend-limit.js';

/**
 * Client bytes a dialogue holds, unparsed, behind a login command while the backend login runs (pipelined commands, an
 * APPEND with a non-synchronising literal). They are post-login input, so pre-login limits do not apply; the Session
 * stops reading at `login`, so normally at most one socket read (≤ 64 KiB) is held and the rest waits in TCP buffers.
 */
export const PIPELINED_BACKLOG_MAX_BYTES = 1024 * 1024;
import type { PoolRouter } from '../pools/pool-router.js';
import type { TierLogin } from '../tier/tier.js';

/** What the Session tells a client dialogue. */
export type ClientEvent =
  | { kind: 'data'; bytes: Buffer }
  /** STARTTLS/STLS handshake finished; the dialogue now runs over TLS. */
  | { kind: 'tls-ready' }
  /** Backend login succeeded; `text` is the backend's final reply without its tag (IMAP: `OK [CAPABILITY …] Logged in`; POP3: `+OK …`). */
  | { kind: 'login-ok'; text: string }
  | { kind: 'login-failed'; error: ProxyError }
  /** The pre-login deadline passed. */
  | { kind: 'deadline' }
  /** Closed from outside before login completed (shutdown, operator kick, backend down): say `error`'s own goodbye. */
  | { kind: 'kick'; error: ProxyError };

/** What a client dialogue asks the Session to do, in order. */
export type ClientAction =
  | { kind: 'send'; bytes: string | Buffer }
  /** Stop reading, upgrade the socket to TLS, then deliver `tls-ready`. The dialogue has already dropped any bytes it buffered (RFC 3207 §4.2 / STARTTLS injection). */
  | { kind: 'start-tls' }
  /** Authenticate and log in to the backend; the Session answers with `login-ok` or `login-failed`. */
  | { kind: 'login'; credentials: Credentials; clientId?: Record<string, string> }
  /** Splice from now on; `pending` holds client bytes already read past the login command. */
  | { kind: 'relay'; pending: Buffer }
  /** Close after flushing what was sent; `reason` is for logs/metrics. */
  | { kind: 'close'; reason: DisconnectReason };

export interface Dialogue {
  /** Actions for a new connection (greeting). */
  start(): ClientAction[];
  step(event: ClientEvent): ClientAction[];
}

export interface DialogueOptions {
  /** The connection is already TLS (implicit TLS listener or after STARTTLS). */
  tls: boolean;
  /** STARTTLS/STLS may be offered (plain listener with TLS configured). */
  starttls: boolean;
  requireTlsForAuth: boolean;
  limits: LimitsConfig;
  greeting?: string;
  /** OAuth mechanisms to offer (oauth configured); none when absent. */
  tokenMechanisms?: readonly TokenMechanism[];
  /** What the RFC 7628 error challenge tells a client whose token was refused. */
  oauthChallenge?: { scope?: string; openidConfiguration?: string };
  /** ManageSieve: the SIEVE capability announced before login (the backend's own list is served after it). */
  sieveExtensions?: string;
  /** ManageSieve: the client is in loopProtection.trustedNetworks (an upstream proxy), so XCLIENT is offered (as Pigeonhole does). */
  trustedUpstream?: boolean;
}

export interface BackendLoginContext {
  /** Name to log in as at the backend (account login, or `login*master`). */
  user: string;
  password: string;
  /** Log in with this bearer token and mechanism instead of the password (Dovecot oauth2 passdb); `user` names the account. */
  token?: { mechanism: TokenMechanism; token: string };
  route: Route;
  client: ClientEndpoint;
  /** The client's connection to the proxy is TLS (implicit or after STARTTLS); sent on in a PROXY v2 header. */
  clientTls?: boolean;
  sessionId: string;
  /** Forward the client address (IMAP ID / XCLIENT) — only when the backend trusts the proxy. */
  forwardClient: boolean;
  /** Parameters the client sent in IMAP ID, to pass on. */
  clientId?: Record<string, string>;
  /** Hops left for the next proxy (loop protection): IMAP ID `x-proxy-ttl`, POP3/ManageSieve XCLIENT `TTL=`, with the client address. */
  proxyTtl?: number;
}

/** Backend events: one line at a time (without CRLF), or TLS done. */
export type BackendEvent = { kind: 'line'; line: string } | { kind: 'tls-ready' };

export type BackendAction =
  | { kind: 'send'; bytes: string | Buffer }
  | { kind: 'start-tls' }
  /** Logged in; `text` is what login-ok carries to the client dialogue. */
  | { kind: 'done'; text: string }
  | { kind: 'fail'; error: ProxyError };

export interface BackendLogin {
  step(event: BackendEvent): BackendAction[];
}

export interface ProtocolModule {
  readonly protocol: 'imap' | 'pop3' | 'sieve';
  createDialogue(options: DialogueOptions): Dialogue;
  createBackendLogin(context: BackendLoginContext): BackendLogin;
  /** Goodbye sent on a spliced session the proxy closes (backend down, shutdown, kick). */
  goodbye(error: ProxyError): string;
}

/** A client connection after accept and PROXY header, handed to a protocol service. */
export interface AcceptedConnection {
  id: string;
  /** Real client address (from the PROXY header when one was accepted). */
  client: ClientEndpoint;
  listener: ListenerConfig;
}

/** What a listener hands sockets to (IMAP/POP3 sessions, SMTP services). */
export interface ConnectionHandler {
  /** Take over a raw TCP socket (no TLS yet, PROXY header already consumed). */
  handle(socket: Socket, conn: AcceptedConnection): void;
  /** Stop taking connections and say goodbye to live ones (drain deadline handled by caller). */
  close(): Promise<void>;
}

/** What every connection handler of one instance shares (Instance builds it; getters see reloads). */
export interface HandlerDeps {
  config: () => Config;
  directory: () => Directory;
  gate: BackendGate;
  sessions: SessionRegistry;
  logger: Logger;
  /** Client-facing TLS (default and SNI certificates, ALPN check); swapped by reload. */
  tls: () => TlsMaterial | undefined;
  /** Failed-login penalty per client address, shared by every protocol of this process. */
  penalty: AuthPenalty;
  /** Never dial our own listeners; bind backend sourceAddresses. */
  guard: BackendGuard;
  /** The per-backend cap on backend connection attempts in flight (backendLogin.maxInFlightPerBackend); none when absent. */
  limiter?: BackendLimiter;
  /** Pool affinity: the member for accounts whose host value names a pool. */
  pools: PoolRouter;
  /** Time and timers (fake in unit tests). */
  clock: Clock;
  /** How backend connections are opened (in-memory sockets in unit tests). */
  dial: Dial;
  /** Users traced on demand in this process (unset: no tracing). */
  traces?: TraceTable;
  /** With `tier:`: failed-login penalty, session limits and registry shared by the tier (falling back to local state). */
  tier?: TierLogin;
}
