// Owns decoding of SASL PLAIN (RFC 4616), LOGIN, OAUTHBEARER (RFC 7628) and XOAUTH2 payloads into one Credentials value, shared by every protocol.
// Must not do I/O or know any protocol's framing; base64 strings in, Credentials or a parse failure out.

import type { PasswordCredentials, TokenCredentials, TokenMechanism } from '../core/types.js';

export { isTokenCredentials } from '../core/types.js';
export type { Credentials, PasswordCredentials, TokenCredentials, TokenMechanism } from '../core/types.js';

/** `base64`: not base64 at all (IMAP answers BAD, RFC 9051 §6.2.2); `malformed`: base64 of a message the mechanism does not take (a failed authentication). */
export type SaslFailure = 'base64' | 'malformed' | 'authzid';
export type SaslResult = { ok: true; credentials: PasswordCredentials } | { ok: false; reason: SaslFailure };

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
  if (!raw) return { ok: false, reason: 'base64' };
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

/** RFC 6750 §2.1 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const MAX_TOKEN_BYTES = 64 * 1024;

export type TokenSaslResult = { ok: true; credentials: TokenCredentials } | { ok: false; reason: SaslFailure };

/** RFC 5801 §4 saslname: "=2C" and "=3D" escape "," and "="; any other "=" is malformed. */
function decodeSaslName(text: string): string | null {
  if (/=(?!2C|3D)/.test(text)) return null;
  return text.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function encodeSaslName(text: string): string {
  return text.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

function bearer(value: string | undefined): string | null {
  const m = value === undefined ? null : /^Bearer +(\S+)$/i.exec(value);
  return m && B64TOKEN.test(m[1]!) ? m[1]! : null;
}

/**
 * RFC 7628 §3.1 client response: gs2-header kvsep *(key=value kvsep) kvsep, e.g.
 * `n,a=user@example.com,^Ahost=…^Aport=…^Aauth=Bearer TOKEN^A^A`. Channel binding ("p=") is refused (§3.1: not supported).
 */
export function decodeOAuthBearer(b64: string): TokenSaslResult {
  const raw = decodeBase64(b64);
  if (!raw) return { ok: false, reason: 'base64' };
  if (raw.length > MAX_TOKEN_BYTES) return { ok: false, reason: 'malformed' };
  const text = raw.toString('utf8');
  const m = /^([ny]),(?:a=([^,]*))?,\x01((?:[A-Za-z]+=[\x21-\x7e \t\r\n]*\x01)*)\x01$/.exec(text);
  if (!m) return { ok: false, reason: 'malformed' };
  const user = m[2] === undefined ? '' : decodeSaslName(m[2]);
  if (user === null || user.includes('\0')) return { ok: false, reason: 'malformed' };
  const pairs = new Map<string, string>();
  for (const kv of m[3]!.split('\x01').filter(Boolean)) {
    const eq = kv.indexOf('=');
    pairs.set(kv.slice(0, eq).toLowerCase(), kv.slice(eq + 1));
  }
  const token = bearer(pairs.get('auth'));
  if (!token) return { ok: false, reason: 'malformed' };
  return { ok: true, credentials: { user, token, mechanism: 'OAUTHBEARER' } };
}

/** XOAUTH2 (Google's, as Microsoft and Dovecot take it): `user=NAME^Aauth=Bearer TOKEN^A^A`. */
export function decodeXOAuth2(b64: string): TokenSaslResult {
  const raw = decodeBase64(b64);
  if (!raw) return { ok: false, reason: 'base64' };
  if (raw.length > MAX_TOKEN_BYTES) return { ok: false, reason: 'malformed' };
  const m = /^user=([^\x00-\x1f]*)\x01auth=([^\x00-\x1f]*)\x01\x01$/.exec(raw.toString('utf8'));
  if (!m) return { ok: false, reason: 'malformed' };
  const token = bearer(m[2]);
  if (!token) return { ok: false, reason: 'malformed' };
  return { ok: true, credentials: { user: m[1]!, token, mechanism: 'XOAUTH2' } };
}

export function decodeTokenResponse(mechanism: TokenMechanism, b64: string): TokenSaslResult {
  return mechanism === 'OAUTHBEARER' ? decodeOAuthBearer(b64) : decodeXOAuth2(b64);
}

/** The initial response a proxy sends a backend for `mechanism` as `user` (RFC 7628 §3.1 / XOAUTH2). */
export function encodeTokenResponse(mechanism: TokenMechanism, user: string, token: string): string {
  const text = mechanism === 'OAUTHBEARER'
    ? `n,a=${encodeSaslName(user)},\x01auth=Bearer ${token}\x01\x01`
    : `user=${user}\x01auth=Bearer ${token}\x01\x01`;
  return Buffer.from(text, 'utf8').toString('base64');
}

/** RFC 7628 §3.2.2 error challenge (a JSON object, base64); XOAUTH2 servers send the same shape. */
export function tokenErrorChallenge(info: { status: string; scope?: string; openidConfiguration?: string }): string {
  const body: Record<string, string> = { status: info.status };
  if (info.scope) body['scope'] = info.scope;
  if (info.openidConfiguration) body['openid-configuration'] = info.openidConfiguration;
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
}

/** RFC 7628 §3.2.3: after the error challenge the client must answer with a single %x01 ("AQ=="); XOAUTH2 clients send an empty line. */
export const TOKEN_ERROR_ACK = 'AQ==';
