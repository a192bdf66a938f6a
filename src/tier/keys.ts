// Owns the names of every Redis key and channel the tier uses, and the hashing that keeps client input out of them.
// Must not talk to Redis; names are pure functions of the prefix and already-hashed parts.
import { createHash } from 'node:crypto';
import { foldName } from '../directory/names.js';

/**
 * A client-supplied name (login name, address) as a key part: SHA-256, base64url, 22 chars (132 bits). The raw
 * text never becomes part of a key, so no input can reach another key, a glob or a Sentinel/Cluster hash tag.
 * Login names are compared case-insensitively (LDAP uid/mail match that way).
 */
export function namePart(kind: 'user' | 'addr', value: string): string {
  const v = kind === 'user' ? foldName(value) : value;
  return createHash('sha256').update(kind).update('\0').update(v).digest('base64url').slice(0, 22);
}

export class TierKeys {
  constructor(readonly prefix: string) {}
  /** ZSET instanceId → expiry (ms) of its last heartbeat. */
  get instances(): string { return `${this.prefix}instances`; }
  /** SET of session members (JSON) of one user, every instance. */
  userSessions(user: string): string { return `${this.prefix}su:${namePart('user', user)}`; }
  /** SET of the logins whose sessions carry this mail address (refreshed with them): a listing by mail finds their sets. */
  mailLogins(mail: string): string { return `${this.prefix}sm:${namePart('user', mail)}`; }
  /** SCAN pattern of every user's session set (the prefix allows no glob characters). */
  get userSessionsPattern(): string { return `${this.prefix}su:*`; }
  /** STRING instanceId with a TTL: the instance doing the tier-wide pool conflict sweep this round. */
  get poolSweepLease(): string { return `${this.prefix}pool-sweep`; }
  /** SET of `instanceId|sessionId|protocol` from one client address. */
  addressSessions(address: string): string { return `${this.prefix}sa:${namePart('addr', address)}`; }
  /** Failed-login counter of one client address / one login name. */
  addressFailures(address: string): string { return `${this.prefix}pa:${namePart('addr', address)}`; }
  userFailures(user: string): string { return `${this.prefix}pu:${namePart('user', user)}`; }
  /** HASH `backend\tprotocol\tinstanceId` → evidence JSON. */
  get backendView(): string { return `${this.prefix}backends`; }
  /** HASH backend → since (ms) of backends in maintenance. */
  get maintenance(): string { return `${this.prefix}maintenance`; }
  /** HASH backend → when (ms) maintenance was switched off: a later "off" outvotes an older "on" pushed back after an outage. */
  get maintenanceOff(): string { return `${this.prefix}maintenance-off`; }
  /** STREAM of recent kicks (bounded length, TTL), read by instances that missed their broadcast. */
  get kicks(): string { return `${this.prefix}kicks`; }
  /** Pub/sub channel of admin actions and view changes. */
  get channel(): string { return `${this.prefix}events`; }
}
