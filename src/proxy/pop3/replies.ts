// Owns the POP3 reply texts the proxy itself sends before login (greeting, CAPA, AUTH listing, short -ERRs).
// Must not hold failure texts the error catalogue owns (errors.ts) nor decide when a reply is sent.
import { CATALOGUE, type ErrorCode } from '../../errors.js';

export const CRLF = '\r\n';

/** One reply line with its CRLF; CR/LF inside `text` cannot split it into two replies. */
export function line(text: string): string {
  return `${text.replace(/[\r\n]/g, ' ')}${CRLF}`;
}

/** The catalogue's POP3 reply for a failure code, as a line. */
export function catalogueLine(code: ErrorCode): string {
  return line(CATALOGUE[code].pop3);
}

/** RFC 1939 §4: greeting; no APOP timestamp is offered. */
export function greeting(text: string | undefined): string {
  return line(`+OK ${text ?? 'mailproxy ready.'}`);
}

export interface CapaOptions {
  /** USER and SASL are usable now (not refused for lack of TLS). */
  authAllowed: boolean;
  /** STLS is on offer now (RFC 2595 §4: only before TLS). */
  stls: boolean;
  /** OAuth mechanisms offered (oauth configured). */
  tokenMechanisms?: readonly string[];
}

/** RFC 2449 §5 multi-line CAPA response; RFC 3206 §6 RESP-CODES / AUTH-RESP-CODE. */
export function capa(o: CapaOptions): string {
  const lines = ['+OK Capability list follows'];
  if (o.authAllowed) lines.push('USER', ['SASL PLAIN LOGIN', ...(o.tokenMechanisms ?? [])].join(' '));
  if (o.stls) lines.push('STLS');
  lines.push('RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION mailproxy', '.');
  return lines.join(CRLF) + CRLF;
}

/** AUTH without arguments: the mechanism list many clients probe with (pre-RFC 5034 usage). */
export function authMechanisms(authAllowed: boolean, tokenMechanisms: readonly string[] = []): string {
  const lines = ['+OK Supported mechanisms follow'];
  if (authAllowed) lines.push('PLAIN', 'LOGIN', ...tokenMechanisms);
  lines.push('.');
  return lines.join(CRLF) + CRLF;
}

/** RFC 5034 §4: a server challenge is "+ " and base64 (empty for PLAIN). */
export function challenge(b64: string): string {
  return `+ ${b64}${CRLF}`;
}

export const OK_USER = line('+OK');
export const OK_STLS = line('+OK Begin TLS negotiation');
export const OK_BYE = line('+OK Bye');
export const ERR_UNKNOWN = line('-ERR Unknown command');
export const ERR_NOT_AUTHENTICATED = line('-ERR Not logged in');
export const ERR_SYNTAX = line('-ERR Syntax error');
export const ERR_NO_USER = line('-ERR No USER given');
export const ERR_STLS = line('-ERR STLS not available');
export const ERR_APOP = line('-ERR APOP not supported');
export const ERR_MECHANISM = line('-ERR Unsupported authentication mechanism');
export const ERR_CANCELLED = line('-ERR Authentication cancelled');
export const ERR_SASL_MALFORMED = line('-ERR Invalid SASL response');
