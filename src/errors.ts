// Owns the one error catalogue: every failure code with its per-protocol reply, log reason, metric label and health signal; and the ordinary ends of a session.
// Must not carry backend error text to clients; foreign errors are wrapped at module boundaries, never thrown raw.

export type ErrorCode =
  | 'AUTH_FAILED'            // wrong password, unknown user, empty password: indistinguishable to the client
  | 'AUTHZ_UNSUPPORTED'      // SASL authorization identity differs from authentication identity
  | 'TLS_REQUIRED'           // plaintext auth refused before TLS
  | 'DIRECTORY_UNAVAILABLE'  // LDAP down, timed out, or answered an error
  | 'IDP_UNAVAILABLE'        // OAuth identity provider (JWKS or introspection endpoint) unreachable or answering errors
  | 'NO_ROUTE'               // account has no host attribute and no default backend
  | 'BACKEND_UNAVAILABLE'    // connect refused / timed out / TLS failed / closed during login
  | 'BACKEND_DOWN'           // health says down: fail fast without trying
  | 'BACKEND_BUSY'           // the per-backend cap on attempts in flight is reached and its queue is full or the wait ran out
  | 'BACKEND_MAINTENANCE'    // administratively drained
  | 'BACKEND_SPLIT_BRAIN'    // two nodes answer in turn and health.splitBrain.policy is refuse
  | 'BACKEND_AUTH_FAILED'    // backend refused the credentials the directory accepted
  | 'BACKEND_USER_BUSY'      // backend says "not now" for this user (POP3 [IN-USE], [LOGIN-DELAY]): the backend itself is fine
  | 'BACKEND_PROTOCOL'       // backend said something we cannot parse during login
  | 'ROUTE_LOOP'             // the route leads back into the proxy tier (own listener, hop count spent)
  | 'LINE_TOO_LONG'
  | 'LITERAL_TOO_LARGE'
  | 'TOO_MANY_ERRORS'
  | 'PREAUTH_TIMEOUT'
  | 'IDLE_TIMEOUT'
  | 'SHUTDOWN'
  | 'ADMIN_KICK'
  | 'TOO_MANY_CONNECTIONS'   // a listener connection limit (total or per client address)
  | 'SESSION_LIMIT'          // a tier-wide session limit (per user or client address) is reached
  | 'PROXY_HEADER_INVALID'
  | 'UNTRUSTED_SOURCE'
  | 'CONFIG_INVALID'
  | 'INTERNAL'
  | 'POOL_MOVE'              // pool affinity: this session is closed so its user can move to another pool member
  | 'POOL_MOVING'            // pool affinity: the user's sessions on the old member are being closed; log in again shortly
  | 'CLIENT_GONE'            // the client closed while its login ran: the login is abandoned (not a backend failure)
  | 'LOCAL_RESOURCES';       // this host ran out of file descriptors, ports or buffers: the backend was never asked

export type HealthSignal = 'none' | 'backend-failure' | 'backend-alive';

export interface ErrorSpec {
  imap: string;   // text after the tag (tagged) or after '* ' for BYE-class codes
  pop3: string;
  smtp: string;
  logReason: string;
  metricLabel: string;
  health: HealthSignal;
}

const TEMP_IMAP = 'NO [UNAVAILABLE] Temporary failure, please try again later';
const TEMP_POP3 = '-ERR [SYS/TEMP] Temporary failure, please try again later';
const TEMP_SMTP = '454 4.7.0 Temporary authentication failure, please try again later';

// RFC 5530 (IMAP response codes), RFC 3206 (POP3 SYS/AUTH), RFC 4954 §6 / RFC 3463 (SMTP enhanced codes).
export const CATALOGUE: Readonly<Record<ErrorCode, ErrorSpec>> = {
  AUTH_FAILED: { imap: 'NO [AUTHENTICATIONFAILED] Authentication failed', pop3: '-ERR [AUTH] Authentication failed', smtp: '535 5.7.8 Authentication credentials invalid', logReason: 'authentication failed', metricLabel: 'auth_failed', health: 'none' },
  AUTHZ_UNSUPPORTED: { imap: 'NO [AUTHORIZATIONFAILED] Authorization identity not supported', pop3: '-ERR [AUTH] Authorization identity not supported', smtp: '535 5.7.8 Authorization identity not supported', logReason: 'authzid differs from authcid', metricLabel: 'authz_unsupported', health: 'none' },
  TLS_REQUIRED: { imap: 'NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS', pop3: '-ERR [AUTH] Plaintext authentication disallowed without TLS', smtp: '538 5.7.11 Encryption required for requested authentication mechanism', logReason: 'plaintext auth without TLS', metricLabel: 'tls_required', health: 'none' },
  DIRECTORY_UNAVAILABLE: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'directory unavailable', metricLabel: 'directory_unavailable', health: 'none' },
  IDP_UNAVAILABLE: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'identity provider unavailable', metricLabel: 'idp_unavailable', health: 'none' },
  NO_ROUTE: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'no backend for account', metricLabel: 'no_route', health: 'none' },
  BACKEND_UNAVAILABLE: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'backend unavailable', metricLabel: 'backend_unavailable', health: 'backend-failure' },
  BACKEND_DOWN: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'backend marked down', metricLabel: 'backend_down', health: 'none' },
  BACKEND_BUSY: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'backend busy: no connection slot', metricLabel: 'backend_busy', health: 'none' },
  BACKEND_MAINTENANCE: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'backend in maintenance', metricLabel: 'backend_maintenance', health: 'none' },
  BACKEND_SPLIT_BRAIN: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'backend split brain: logins refused', metricLabel: 'backend_split_brain', health: 'none' },
  BACKEND_AUTH_FAILED: { imap: 'NO [AUTHENTICATIONFAILED] Authentication failed', pop3: '-ERR [AUTH] Authentication failed', smtp: '535 5.7.8 Authentication credentials invalid', logReason: 'backend refused login', metricLabel: 'backend_auth_failed', health: 'backend-alive' },
  BACKEND_USER_BUSY: { imap: TEMP_IMAP, pop3: '-ERR [IN-USE] Mailbox busy, please try again later', smtp: TEMP_SMTP, logReason: 'backend refused this user for now', metricLabel: 'backend_user_busy', health: 'backend-alive' },
  BACKEND_PROTOCOL: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'unexpected backend reply', metricLabel: 'backend_protocol', health: 'backend-failure' },
  ROUTE_LOOP: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'route loops back into the proxy tier', metricLabel: 'route_loop', health: 'none' },
  LINE_TOO_LONG: { imap: 'BAD Line too long', pop3: '-ERR Line too long', smtp: '500 5.5.2 Line too long', logReason: 'line too long', metricLabel: 'line_too_long', health: 'none' },
  LITERAL_TOO_LARGE: { imap: 'BAD Literal too large', pop3: '-ERR Too large', smtp: '552 5.3.4 Too large', logReason: 'literal too large', metricLabel: 'literal_too_large', health: 'none' },
  TOO_MANY_ERRORS: { imap: 'BYE Too many invalid commands', pop3: '-ERR Too many invalid commands', smtp: '421 4.7.0 Too many errors', logReason: 'too many bad commands', metricLabel: 'too_many_errors', health: 'none' },
  PREAUTH_TIMEOUT: { imap: 'BYE Disconnected for inactivity', pop3: '-ERR Disconnected for inactivity', smtp: '421 4.4.2 Timeout, closing connection', logReason: 'pre-login deadline', metricLabel: 'preauth_timeout', health: 'none' },
  IDLE_TIMEOUT: { imap: 'BYE Disconnected for inactivity', pop3: '-ERR Disconnected for inactivity', smtp: '421 4.4.2 Timeout, closing connection', logReason: 'idle timeout', metricLabel: 'idle_timeout', health: 'none' },
  SHUTDOWN: { imap: 'BYE [UNAVAILABLE] Server shutting down, please reconnect', pop3: '-ERR [SYS/TEMP] Server shutting down', smtp: '421 4.3.2 Service shutting down', logReason: 'shutdown', metricLabel: 'shutdown', health: 'none' },
  ADMIN_KICK: { imap: 'BYE [UNAVAILABLE] Session closed by the administrator, please reconnect', pop3: '-ERR [SYS/TEMP] Session closed by the administrator, please reconnect', smtp: '421 4.3.2 Session closed by the administrator, please reconnect', logReason: 'kicked by operator', metricLabel: 'admin_kick', health: 'none' },
  // RFC 5530 §3 [LIMIT]; RFC 2449 §8.1.1 [IN-USE] (POP3: the mailbox is in use elsewhere).
  SESSION_LIMIT: { imap: 'NO [LIMIT] Too many sessions for this account, please try again later', pop3: '-ERR [IN-USE] Too many sessions for this account, please try again later', smtp: '454 4.7.0 Too many sessions, please try again later', logReason: 'tier session limit reached', metricLabel: 'session_limit', health: 'none' },
  TOO_MANY_CONNECTIONS: { imap: 'BYE [UNAVAILABLE] Too many connections, please try again later', pop3: '-ERR [SYS/TEMP] Too many connections, please try again later', smtp: '421 4.7.0 Too many connections, please try again later', logReason: 'connection limit reached', metricLabel: 'too_many_connections', health: 'none' },
  PROXY_HEADER_INVALID: { imap: 'BYE Invalid PROXY header', pop3: '-ERR Invalid PROXY header', smtp: '421 4.7.0 Invalid PROXY header', logReason: 'invalid PROXY protocol header', metricLabel: 'proxy_header_invalid', health: 'none' },
  UNTRUSTED_SOURCE: { imap: 'BYE Connection refused', pop3: '-ERR Connection refused', smtp: '421 4.7.0 Connection refused', logReason: 'source not trusted for PROXY protocol', metricLabel: 'untrusted_source', health: 'none' },
  CONFIG_INVALID: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'invalid configuration', metricLabel: 'config_invalid', health: 'none' },
  INTERNAL: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: '451 4.3.0 Internal error, please try again later', logReason: 'internal error', metricLabel: 'internal', health: 'none' },
  POOL_MOVE: { imap: 'BYE [UNAVAILABLE] Your mailbox is moving to another server, please reconnect', pop3: '-ERR [SYS/TEMP] Your mailbox is moving to another server, please reconnect', smtp: '421 4.3.2 Mailbox moving to another server, please reconnect', logReason: 'pool move', metricLabel: 'pool_move', health: 'none' },
  POOL_MOVING: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'pool move in progress', metricLabel: 'pool_moving', health: 'none' },
  CLIENT_GONE: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'client left during the login', metricLabel: 'client_gone', health: 'none' },
  LOCAL_RESOURCES: { imap: TEMP_IMAP, pop3: TEMP_POP3, smtp: TEMP_SMTP, logReason: 'out of local resources', metricLabel: 'local_resources', health: 'none' },
};

/**
 * errno codes of a connect that failed on this host, before any packet reached the peer: descriptors (EMFILE, ENFILE),
 * kernel buffers or memory (ENOBUFS, ENOMEM), no free local address or port (EADDRNOTAVAIL). They say nothing about the
 * peer's health.
 */
const LOCAL_RESOURCE_ERRNOS: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL']);

export function isLocalResourceError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' && LOCAL_RESOURCE_ERRNOS.has(code);
}

/** Ends of a session that are not failures; with the error codes they are every disconnect reason (log text and metric label). */
export const ENDINGS = {
  LOGOUT: { logReason: 'client logged out', metricLabel: 'logout' },
  QUIT: { logReason: 'client quit', metricLabel: 'quit' },
  CLIENT_CLOSED: { logReason: 'client closed', metricLabel: 'client_closed' },
  BACKEND_CLOSED: { logReason: 'backend closed', metricLabel: 'backend_closed' },
  CLIENT_ERROR: { logReason: 'client connection error', metricLabel: 'client_error' },
  BACKEND_ERROR: { logReason: 'backend connection error', metricLabel: 'backend_error' },
  TLS_FAILED: { logReason: 'TLS handshake failed', metricLabel: 'tls_failed' },
  TOO_MANY_AUTH_FAILURES: { logReason: 'too many failed logins', metricLabel: 'too_many_auth_failures' },
  CLOSED: { logReason: 'connection closed', metricLabel: 'closed' },
} as const satisfies Record<string, { logReason: string; metricLabel: string }>;

export type Ending = keyof typeof ENDINGS;
/** Why a session ended: an ordinary ending or an error code; never free text. */
export type DisconnectReason = Ending | ErrorCode;

export function disconnectSpec(reason: DisconnectReason): { logReason: string; metricLabel: string } {
  return reason in ENDINGS ? ENDINGS[reason as Ending] : CATALOGUE[reason as ErrorCode];
}

export class ProxyError extends Error {
  readonly code: ErrorCode;
  /** Sanitised detail for logs only (never sent to a client). */
  readonly detail: string | undefined;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${CATALOGUE[code].logReason}: ${detail}` : CATALOGUE[code].logReason, options);
    this.name = 'ProxyError';
    this.code = code;
    this.detail = detail === undefined ? undefined : sanitize(detail);
  }
  get spec(): ErrorSpec { return CATALOGUE[this.code]; }
}

export function isProxyError(e: unknown): e is ProxyError {
  return e instanceof ProxyError;
}

/** Wrap anything thrown by foreign code into a ProxyError with the given code (ProxyErrors pass through). */
export function toProxyError(e: unknown, code: ErrorCode): ProxyError {
  if (e instanceof ProxyError) return e;
  const msg = e instanceof Error ? `${(e as NodeJS.ErrnoException).code ?? e.name}: ${e.message}` : String(e);
  return new ProxyError(code, msg, { cause: e });
}

/** Make foreign text safe for a log line: printable ASCII only, cut short. */
export function sanitize(text: string, max = 200): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
