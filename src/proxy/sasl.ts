// Owns decoding of SASL PLAIN (RFC 4616) and LOGIN payloads into one Credentials value, shared by IMAP, POP3 and SMTP.
// Must not do I/O or know any protocol's framing; base64 strings in, Credentials or a parse failure out.

import type { Credentials } from '../core/types.js';

export type SaslResult = { ok: true; credentials: Credentials } | { ok: false; reason: 'malformed' | 'authzid' };

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64 decode (RFC 4648 §4); returns null on anything else. */
export function decodeBase64(text: string): Buffer | null {
  const t = text.trim();
  if (t.length % 4 !== 0 || !BASE64.test(t)) return null;
  return Buffer.from(t, 'base64');
}

/** RFC 4616 §2: message = [authzid] NUL authcid NUL passwd. An authzid equal to authcid is accepted. */
export function decodePlain(b64: string): SaslResult {
  const raw = decodeBase64(b64);
  if (!raw) return { ok: false, reason: 'malformed' };
  const parts = raw.toString('utf8').split('\0');
  if (parts.length !== 3) return { ok: false, reason: 'malformed' };
  const [authzid, user, password] = parts as [string, string, string];
  if (!user) return { ok: false, reason: 'malformed' };
  if (authzid && authzid !== user) return { ok: false, reason: 'authzid' };
  return { ok: true, credentials: { user, password, mechanism: 'PLAIN' } };
}

/** Decode one step of the LOGIN mechanism (a base64 user name or password). */
export function decodeLoginStep(b64: string): string | null {
  const raw = decodeBase64(b64);
  return raw ? raw.toString('utf8') : null;
}

/** Server challenges of the LOGIN mechanism (draft-murchison-sasl-login), base64 of "Username:" / "Password:". */
export const LOGIN_CHALLENGE_USER = Buffer.from('Username:').toString('base64');
export const LOGIN_CHALLENGE_PASS = Buffer.from('Password:').toString('base64');

/** Encode credentials as a PLAIN initial response for a backend login. */
export function encodePlain(user: string, password: string, authzid = ''): string {
  return Buffer.from(`${authzid}\0${user}\0${password}`, 'utf8').toString('base64');
}
