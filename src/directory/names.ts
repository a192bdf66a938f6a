// Owns the rules for login names and mail addresses that every directory applies before looking anything up.
// Must not do I/O or know any directory backend; pure string checks only.

/** Longest login name or address accepted, in UTF-8 bytes (RFC 5321 §4.5.3.1.3 caps a path at 256 octets). */
export const MAX_NAME_BYTES = 256;

// C0 controls, DEL and C1 controls: never part of a real login name, and NUL/CR/LF are injection vectors.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** True when a typed login name or address may be looked up at all (non-empty, ≤ 256 bytes, no control characters). */
export function isAcceptableName(name: string): boolean {
  return name.length > 0 && Buffer.byteLength(name, 'utf8') <= MAX_NAME_BYTES && !CONTROL.test(name);
}

/**
 * Canonical form of a mail address for comparisons: the domain is case-insensitive (RFC 5321 §2.4),
 * the local part is kept as typed (RFC 5321 §2.4 says it MAY be case-sensitive). Names without '@' are returned unchanged.
 */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  return `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase()}`;
}

/** A login name or address as the proxy compares account names: trimmed, in any case (LDAP matches uid and mail so). */
export function foldName(name: string): string {
  return name.trim().toLowerCase();
}

/**
 * Whether the account with this login (and mail address) is the one an operator or the tier named: by its login or its
 * mail address, in any case. The one rule for kicks, route invalidation and session listings, local and tier-wide.
 */
export function namesAccount(login: string | undefined, mail: string | undefined, named: string): boolean {
  const wanted = foldName(named);
  return (login !== undefined && foldName(login) === wanted) || (mail !== undefined && foldName(mail) === wanted);
}
