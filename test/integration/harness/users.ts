// Owns the fixed test users (uid, password, mailHost) and the {SSHA} hashing shared by LDAP and Dovecot.
// Must not write any file or talk to any server.
import { createHash, randomBytes } from 'node:crypto';

export type UserName = 'alice' | 'bob' | 'carol' | 'dave' | 'erin';

export interface TestUser {
  uid: string;
  mail: string;
  password: string;
  mailHost?: string;
  dn: string;
}

export const BASE_DN = 'dc=example,dc=test';
export const PEOPLE_DN = `ou=people,${BASE_DN}`;
export const MAIL_DOMAIN = 'example.test';
export const SERVICE_DN = `cn=mailproxy,${BASE_DN}`;
export const SERVICE_PASSWORD = 'mailproxy-service-secret';
export const ADMIN_DN = `cn=admin,${BASE_DN}`;
export const ADMIN_PASSWORD = 'admin-secret';
export const MASTER_USER = 'proxymaster';
export const MASTER_PASSWORD = 'master-secret';
export const MASTER_SEPARATOR = '*';

/** erin's password: p " s s SPACE w \ r d SPACE é {5} — exercises quoting, literals and UTF-8. */
export const ERIN_PASSWORD = 'p"ss w\\rd \u00e9{5}';

function user(uid: string, password: string, mailHost?: string): TestUser {
  const u: TestUser = { uid, mail: `${uid}@${MAIL_DOMAIN}`, password, dn: `uid=${uid},${PEOPLE_DN}` };
  if (mailHost !== undefined) u.mailHost = mailHost;
  return u;
}

export function makeUsers(): Record<UserName, TestUser> {
  return {
    alice: user('alice', 'alice-secret', 'backend-a'),
    bob: user('bob', 'bob-secret', 'backend-b'),
    carol: user('carol', 'carol-secret'),
    dave: user('dave', 'dave-secret', 'backend-dead'),
    erin: user('erin', ERIN_PASSWORD, 'backend-a'),
  };
}

/** RFC 2307-style salted SHA-1: "{SSHA}" + base64(SHA1(password || salt) || salt), password as UTF-8. */
export function sshaHash(password: string, salt: Buffer = randomBytes(8)): string {
  const digest = createHash('sha1').update(Buffer.from(password, 'utf8')).update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}
