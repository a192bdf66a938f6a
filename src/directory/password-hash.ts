// Owns verifying and creating Dovecot/OpenLDAP-style scheme-prefixed password hashes ({SSHA512}…, {BLF-CRYPT}…, {ARGON2ID}…).
// Must not know where hashes are stored nor log anything; a malformed or unknown hash verifies as false, never as true.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { argon2Verify, argon2id, argon2i } from 'hash-wasm';
import { ProxyError } from '../errors.js';

/** Salted SHA family: RFC 2307-style "{SCHEME}" + base64(digest(password || salt) || salt), as OpenLDAP and Dovecot write it. */
const SALTED_SHA = { SSHA: 'sha1', SSHA256: 'sha256', SSHA512: 'sha512' } as const;
const DIGEST_BYTES: Record<string, number> = { sha1: 20, sha256: 32, sha512: 64 };

export const SUPPORTED_SCHEMES = ['SSHA', 'SSHA256', 'SSHA512', 'BLF-CRYPT', 'BCRYPT', 'ARGON2ID', 'ARGON2I', 'PLAIN'] as const;
export type HashScheme = (typeof SUPPORTED_SCHEMES)[number];

const BCRYPT_RE = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const ARGON2_RE = /^\$(argon2id|argon2i)\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

/** Split "{SCHEME}rest"; the scheme is case-insensitive as in Dovecot. */
export function splitScheme(hash: string): { scheme: HashScheme; value: string } | null {
  const m = /^\{([A-Za-z0-9-]+)\}/.exec(hash);
  if (!m) return null;
  const scheme = m[1]!.toUpperCase();
  if (!(SUPPORTED_SCHEMES as readonly string[]).includes(scheme)) return null;
  return { scheme: scheme as HashScheme, value: hash.slice(m[0].length) };
}

/** Describe why a stored hash cannot be used, or null when it is well formed (for validating files at load time). */
export function describeHashProblem(hash: string): string | null {
  const parts = splitScheme(hash);
  if (!parts) return `unsupported or missing {SCHEME} prefix (supported: ${SUPPORTED_SCHEMES.join(', ')})`;
  const { scheme, value } = parts;
  switch (scheme) {
    case 'SSHA': case 'SSHA256': case 'SSHA512': {
      if (!BASE64_RE.test(value)) return `${scheme} value is not base64`;
      const bytes = Buffer.from(value, 'base64').length;
      return bytes > DIGEST_BYTES[SALTED_SHA[scheme]]! ? null : `${scheme} value too short to hold digest and salt`;
    }
    case 'BLF-CRYPT': case 'BCRYPT':
      return BCRYPT_RE.test(value) ? null : `${scheme} value is not a $2a$/$2b$/$2y$ bcrypt string`;
    case 'ARGON2ID': case 'ARGON2I': {
      const m = ARGON2_RE.exec(value);
      if (!m) return `${scheme} value is not a PHC argon2 string ($argon2id$v=19$m=..,t=..,p=..$salt$hash)`;
      return m[1]!.toUpperCase() === scheme ? null : `${scheme} prefix does not match the ${m[1]} PHC string`;
    }
    case 'PLAIN':
      return null;
  }
}

/** Constant-time equality of two byte strings of possibly different length (compares fixed-size digests). */
function equalConstantTime(a: Buffer, b: Buffer): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}

function verifySaltedSha(algorithm: 'sha1' | 'sha256' | 'sha512', value: string, password: Buffer): boolean {
  const raw = Buffer.from(value, 'base64');
  const size = DIGEST_BYTES[algorithm]!;
  if (raw.length <= size) return false;
  const expected = raw.subarray(0, size);
  const salt = raw.subarray(size);
  const actual = createHash(algorithm).update(password).update(salt).digest();
  return timingSafeEqual(actual, expected);
}

/**
 * Check a password against a stored scheme-prefixed hash. The password is compared as UTF-8 bytes.
 * Returns false for a wrong password and for a malformed or unsupported hash.
 * `{PLAIN}` is supported for tests and migrations only: it stores the password in clear text and is insecure.
 */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  if (describeHashProblem(stored) !== null) return false;
  const { scheme, value } = splitScheme(stored)!;
  const pw = Buffer.from(password, 'utf8');
  switch (scheme) {
    case 'SSHA': case 'SSHA256': case 'SSHA512':
      return verifySaltedSha(SALTED_SHA[scheme], value, pw);
    case 'BLF-CRYPT': case 'BCRYPT':
      // bcrypt uses only the first 72 bytes of the password (a property of the algorithm, also in Dovecot).
      return bcrypt.compare(password, value);
    case 'ARGON2ID': case 'ARGON2I':
      try { return await argon2Verify({ password: pw, hash: value }); } catch { return false; }
    case 'PLAIN':
      return equalConstantTime(pw, Buffer.from(value, 'utf8'));
  }
}

export interface HashOptions {
  /** Salt for the salted SHA schemes (default 8 random bytes). */
  salt?: Buffer;
  /** bcrypt cost (default 10). */
  bcryptCost?: number;
  /** argon2 parameters (defaults: t=3, m=65536 KiB, p=1). */
  argon2?: { iterations?: number; memorySize?: number; parallelism?: number };
}

/** Create a scheme-prefixed hash (fixtures, tests, the static directory's timing decoy). */
export async function hashPassword(scheme: HashScheme, password: string, options: HashOptions = {}): Promise<string> {
  const pw = Buffer.from(password, 'utf8');
  switch (scheme) {
    case 'SSHA': case 'SSHA256': case 'SSHA512': {
      const salt = options.salt ?? randomBytes(8);
      const digest = createHash(SALTED_SHA[scheme]).update(pw).update(salt).digest();
      return `{${scheme}}${Buffer.concat([digest, salt]).toString('base64')}`;
    }
    case 'BLF-CRYPT': case 'BCRYPT':
      return `{${scheme}}${await bcrypt.hash(password, options.bcryptCost ?? 10)}`;
    case 'ARGON2ID': case 'ARGON2I': {
      const a = options.argon2 ?? {};
      const params = {
        password: pw, salt: randomBytes(16), iterations: a.iterations ?? 3, memorySize: a.memorySize ?? 65536,
        parallelism: a.parallelism ?? 1, hashLength: 32, outputType: 'encoded' as const,
      };
      // hash-wasm's encoded output keeps base64 padding-free PHC form ($argon2id$v=19$m=…,t=…,p=…$salt$hash).
      return `{${scheme}}${scheme === 'ARGON2ID' ? await argon2id(params) : await argon2i(params)}`;
    }
    case 'PLAIN':
      return `{PLAIN}${password}`;
    default:
      throw new ProxyError('INTERNAL', `cannot hash with scheme ${String(scheme)}`);
  }
}
