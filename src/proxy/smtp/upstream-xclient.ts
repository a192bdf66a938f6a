// Owns XCLIENT from trusted upstream proxies on the SMTP/LMTP listeners: the hop count (TTL=, Dovecot's proxy TTL) and client address they pass in.
// Must not decide who is trusted or refuse a route; the frontend enables it per connection, transaction.ts counts the hop down.
import { isHopCount } from '../loop-guard.js';

/**
 * What our listeners advertise to a trusted upstream (EHLO/LHLO `XCLIENT …`). smtp-server itself knows NAME ADDR PORT
 * PROTO HELO LOGIN; TTL is taken out here before it sees the command. LOGIN is not offered: a login goes through AUTH
 * here (the upstream authenticates as the user), never on an upstream's word. Dovecot's submission and LMTP proxies
 * send only the attributes a server advertises.
 */
export const UPSTREAM_XCLIENT = 'XCLIENT NAME ADDR PORT PROTO HELO TTL';

/** Attributes smtp-server applies itself. */
const PASSED = new Set(['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO']);

export type XclientSplit =
  | { ok: true; ttl: string | undefined; forward: string }
  | { ok: false; reason: string };

/**
 * An upstream's `XCLIENT k=v …` line split into the hop count and the line smtp-server gets (the attributes it applies).
 * Attributes we did not advertise (LOGIN, SESSION, DESTADDR, FORWARD…) are dropped: Dovecot sends only advertised ones,
 * and none of them may change who is logged in. A TTL that is not a small decimal number is a syntax error, as in
 * Dovecot. With only TTL, smtp-server still gets an attribute (PROTO=[UNAVAILABLE], which changes nothing) so that it
 * answers with its greeting as XCLIENT_README demands.
 */
export function splitXclient(line: string): XclientSplit {
  const parts = line.trim().split(/\s+/).slice(1);
  if (!parts.length) return { ok: false, reason: 'no attributes' };
  let ttl: string | undefined;
  const kept: string[] = [];
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'attribute without value' };
    const key = p.slice(0, eq).toUpperCase();
    if (key === 'TTL') {
      const v = p.slice(eq + 1);
      if (!isHopCount(v)) return { ok: false, reason: 'TTL is not a number' };
      ttl = v;
    } else if (PASSED.has(key)) {
      kept.push(p);
    }
  }
  return { ok: true, ttl, forward: `XCLIENT ${kept.length ? kept.join(' ') : 'PROTO=[UNAVAILABLE]'}` };
}

/** The part of smtp-server's SMTPConnection this module touches (smtp-server 3.x; pinned by the upstream-xclient tests). */
export interface XclientConnection {
  remoteAddress: string;
  remotePort: number;
  send(code: number, data: string | string[], context?: unknown): void;
  handler_XCLIENT(command: Buffer, callback: () => void): void;
}

/** What a trusted upstream told us, kept on the client connection's state. */
export interface UpstreamInfo {
  /** The hop count the upstream sent (XCLIENT TTL=), if any. */
  ttl?: string;
  /** The client the upstream forwarded (XCLIENT ADDR/PORT), passed on to backends instead of the upstream's address. */
  client?: { address: string; port: number };
}

/**
 * Let a trusted upstream's XCLIENT through on this smtp-server connection: advertise TTL, take TTL= out of the command
 * (into `info`) and hand the rest to smtp-server's own handler (which validates and applies it, then greets again).
 */
export function acceptUpstreamXclient(connection: XclientConnection, info: UpstreamInfo): void {
  const send = connection.send.bind(connection);
  let lastCode = 0;
  connection.send = (code, data, context) => {
    lastCode = code;
    const lines = code === 250 && Array.isArray(data) ? data.map((l) => (/^XCLIENT /i.test(l) ? UPSTREAM_XCLIENT : l)) : data;
    send(code, lines, context);
  };
  const original = connection.handler_XCLIENT.bind(connection);
  connection.handler_XCLIENT = (command, callback) => {
    const split = splitXclient(command.toString('utf8'));
    if (!split.ok) {
      send(501, `5.5.4 Bad XCLIENT syntax (${split.reason})`, false);
      callback();
      return;
    }
    const before = connection.remoteAddress;
    lastCode = 0;
    original(Buffer.from(split.forward), () => {
      // smtp-server greets again (220) when it took the command; 501/503/550 leave everything as it was.
      if (lastCode === 220) {
        if (split.ttl !== undefined) info.ttl = split.ttl;
        if (connection.remoteAddress !== before) info.client = { address: connection.remoteAddress, port: Number(connection.remotePort) || 0 };
      }
      callback();
    });
  };
}

/** smtp-server's connection for `id` in `connections` (its `connections` set); undefined when it is not there. */
export function connectionById(connections: Iterable<{ id: string }>, id: string): XclientConnection | undefined {
  for (const c of connections) if (c.id === id) return c as unknown as XclientConnection;
  return undefined;
}
