// Owns small IMAP reply formatters: quoting, capability lists, tagged/untagged replies taken from the error catalogue.
// Must not hold state or put client input other than a validated tag into any reply.
import { CATALOGUE, type ErrorCode } from '../../errors.js';

export const CRLF = '\r\n';

export interface CapabilityState {
  tls: boolean;
  starttls: boolean;
  requireTlsForAuth: boolean;
  /** OAuth mechanisms offered (oauth configured). */
  tokenMechanisms?: readonly string[];
}

/** Whether plaintext LOGIN/AUTHENTICATE is refused right now (RFC 9051 §6.2.3 LOGINDISABLED). */
export function loginDisabled(s: CapabilityState): boolean {
  return s.requireTlsForAuth && !s.tls;
}

/** Pre-login capabilities: only what the proxy itself implements (post-login ones come from the backend's login reply). */
export function capabilities(s: CapabilityState): string[] {
  const caps = ['IMAP4rev1', 'SASL-IR', 'LITERAL+', 'ID'];
  if (s.starttls && !s.tls) caps.push('STARTTLS');
  if (loginDisabled(s)) caps.push('LOGINDISABLED');
  else caps.push('AUTH=PLAIN', 'AUTH=LOGIN', ...(s.tokenMechanisms ?? []).map((m) => `AUTH=${m}`));
  return caps;
}

/** RFC 9051 §4.3 quoted string; bytes a quoted string cannot carry (CR, LF, NUL) become "?". */
export function quote(text: string): string {
  return `"${text.replace(/[\r\n\0]/g, '?').replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Printable-ASCII quoted string, for values of unknown origin sent to a backend that may not accept UTF-8 (RFC 3501 §4.3). */
export function quoteAscii(text: string): string {
  // Most values (addresses, ports, ids) need no escaping: one test instead of three replaces.
  if (PLAIN_QUOTABLE.test(text)) return `"${text}"`;
  return quote(text.replace(/[^\x20-\x7e]/g, '?'));
}
const PLAIN_QUOTABLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

export function tagged(tag: string, text: string): string {
  return `${tag} ${text}${CRLF}`;
}

/** The catalogue's IMAP text for `code` (status word onwards). */
export function imapText(code: ErrorCode): string {
  return CATALOGUE[code].imap;
}

/** Tagged reply with the catalogue text for `code`. */
export function taggedError(tag: string | null, code: ErrorCode): string {
  return `${tag ?? '*'} ${CATALOGUE[code].imap}${CRLF}`;
}

/** The catalogue text for `code` as a BYE condition (`NO [UNAVAILABLE] x` → `BYE [UNAVAILABLE] x`). */
export function byeText(code: ErrorCode): string {
  return CATALOGUE[code].imap.replace(/^(?:OK|NO|BAD|BYE|PREAUTH) /, 'BYE ');
}

/** Untagged `* BYE …` line for `code`. */
export function bye(code: ErrorCode): string {
  return `* ${byeText(code)}${CRLF}`;
}
