// Owns recognising logins that loop back into the tier: a backend that is one of our own listeners, and the hop count (TTL).
// Must not connect, resolve names or log; callers pass addresses (config, bound listeners, connected sockets).
import { networkInterfaces } from 'node:os';
import { isIP } from 'node:net';

/** Dovecot's default hop budget (login proxy TTL); a login may pass this many proxies. */
export const DEFAULT_PROXY_TTL = 5;

/** `::ffff:10.0.0.1` → `10.0.0.1`, lower-case IPv6, no zone. */
export function plainIp(address: string): string {
  const a = address.trim().toLowerCase().replace(/%.*$/, '');
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

const isWildcard = (a: string) => a === '0.0.0.0' || a === '::' || a === '';
const isLoopback = (a: string) => a === '::1' || a.startsWith('127.') || a === 'localhost';

/**
 * Addresses of this host's interfaces (plus loopback): where a wildcard listener can be reached. A sandbox that denies
 * reading them (no AF_NETLINK: Node throws "uv_interface_addresses returned Unknown system error 97") leaves loopback
 * only, and `onError` hears why, instead of the proxy failing to start with that opaque error.
 */
export function localAddresses(onError?: (reason: string) => void): Set<string> {
  const out = new Set<string>(['127.0.0.1', '::1']);
  let interfaces: ReturnType<typeof networkInterfaces>;
  try {
    interfaces = networkInterfaces();
  } catch (e) {
    onError?.((e as Error).message);
    return out;
  }
  for (const list of Object.values(interfaces)) for (const i of list ?? []) out.add(plainIp(i.address));
  return out;
}

export interface OwnListener { address: string; port: number }

/**
 * Is `address:port` (a backend endpoint, or the peer of a connected backend socket) one of `listeners`?
 * A listener on 0.0.0.0/:: is reachable on every local address and any 127.0.0.0/8 address.
 */
export function isOwnListener(address: string, port: number, listeners: readonly OwnListener[], local: ReadonlySet<string>): boolean {
  const a = plainIp(address);
  return listeners.some((l) => {
    if (l.port !== port || port === 0) return false;
    const la = plainIp(l.address);
    if (la === a) return true;
    if (la === 'localhost' && isLoopback(a)) return true;
    return isWildcard(la) && (local.has(a) || isLoopback(a));
  });
}

export type HopCheck = { ok: true; next: number } | { ok: false; ttl: number };

/** A hop count as proxies send it (IMAP ID `x-proxy-ttl`, XCLIENT `TTL=`): a small decimal number. */
export function isHopCount(value: string): boolean {
  return /^\d{1,4}$/.test(value);
}

/**
 * The hop count for the next proxy (Dovecot `x-proxy-ttl` in IMAP ID, `TTL=` in XCLIENT): the one a trusted client
 * (an upstream proxy) sent, else `initial`; at 1 or below this login would go around once more: refuse. The next hop
 * gets one less. An untrusted or malformed value is ignored (a client must not be able to lengthen its own path).
 */
export function nextHop(received: string | undefined, trusted: boolean, initial: number): HopCheck {
  let ttl = initial;
  if (trusted && received !== undefined && isHopCount(received.trim())) ttl = Math.min(Number(received.trim()), initial);
  return ttl <= 1 ? { ok: false, ttl } : { ok: true, next: ttl - 1 };
}
