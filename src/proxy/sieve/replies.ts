// Owns ManageSieve reply formatting (RFC 5804 §1.3/§4): quoted strings, the capability block, OK/NO/BYE with response codes from the error catalogue.
// Must not hold state or echo client input (passwords above all) into a reply.
import { CATALOGUE, type ErrorCode } from '../../errors.js';
import type { TokenMechanism } from '../sasl.js';

export const CRLF = '\r\n';

/** RFC 5804 §4 quoted string; CR, LF and NUL cannot be carried and become "?". */
export function quote(text: string): string {
  return `"${text.replace(/[\r\n\0]/g, '?').replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export interface SieveCapabilityState {
  tls: boolean;
  starttls: boolean;
  requireTlsForAuth: boolean;
  tokenMechanisms: readonly TokenMechanism[];
  implementation: string;
  sieveExtensions: string;
  /** Offer XCLIENT (to trusted upstream proxies only). */
  xclient?: boolean;
}

export function authAllowed(s: SieveCapabilityState): boolean {
  return s.tls || !s.requireTlsForAuth;
}

/** RFC 5804 §1.7: the capability response, ended by OK. SASL is empty while authentication is refused (before TLS). */
export function capabilityBlock(s: SieveCapabilityState, okText: string): string {
  const sasl = authAllowed(s) ? ['PLAIN', 'LOGIN', ...s.tokenMechanisms].join(' ') : '';
  const lines = [
    `${quote('IMPLEMENTATION')} ${quote(s.implementation)}`,
    `${quote('SASL')} ${quote(sasl)}`,
    `${quote('SIEVE')} ${quote(s.sieveExtensions)}`,
    // RFC 5804 §1.7: NOTIFY (the enotify methods) must be announced when the enotify extension is.
    ...(/(^|\s)enotify(\s|$)/.test(s.sieveExtensions) ? [`${quote('NOTIFY')} ${quote('mailto')}`] : []),
    ...(s.starttls && !s.tls ? [quote('STARTTLS')] : []),
    ...(s.xclient ? [quote('XCLIENT')] : []),
    `${quote('VERSION')} ${quote('1.0')}`,
    `OK ${quote(okText)}`,
  ];
  return lines.join(CRLF) + CRLF;
}

/** The catalogue's reason text for `code` without IMAP's status word and response code. */
function reason(code: ErrorCode): string {
  return CATALOGUE[code].imap.replace(/^(?:OK|NO|BAD|BYE) (?:\[[^\]]*\] )?/, '');
}

/** A temporary condition: the catalogue's IMAP reply carries [UNAVAILABLE] (RFC 5530) for exactly these. */
function temporary(code: ErrorCode): boolean {
  return CATALOGUE[code].imap.includes('[UNAVAILABLE]');
}

/**
 * NO for `code`: temporary conditions carry (TRYLATER) (RFC 5804 §1.3), TLS refusals (ENCRYPT-NEEDED), bad SASL
 * payloads (SASL), wrong credentials plain NO (the same for unknown users).
 */
export function no(code: ErrorCode): string {
  const rc = code === 'TLS_REQUIRED' ? '(ENCRYPT-NEEDED) ' : temporary(code) ? '(TRYLATER) ' : '';
  return `NO ${rc}${quote(reason(code))}${CRLF}`;
}

/** BYE for `code` (connection closing). */
export function bye(code: ErrorCode): string {
  const rc = temporary(code) ? '(TRYLATER) ' : '';
  return `BYE ${rc}${quote(reason(code))}${CRLF}`;
}

export const OK = (text: string): string => `OK ${quote(text)}${CRLF}`;
export const NO = (text: string): string => `NO ${quote(text)}${CRLF}`;
