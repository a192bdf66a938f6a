// Owns the HAProxy PROXY protocol (v1 text, v2 binary): parsing a client's header, trusting its sender, encoding one for a backend.
// Must not touch sockets or decide policy beyond CIDR matching; bytes in, a header or a reason out (no throws on bad input).
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { ProxyError } from '../errors.js';

export interface ProxyAddress {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** LOCAL (v2 only): the sender's own connection, e.g. a health check; use the real endpoints. */
  command: 'PROXY' | 'LOCAL';
  family: 'tcp4' | 'tcp6' | 'unknown';
  source?: ProxyAddress;
  destination?: ProxyAddress;
}

export type ProxyHeaderResult =
  /** `needed`: the whole header's length once known (v2 after its fixed part): nothing to parse before that many bytes. */
  | { state: 'need-more'; needed?: number }
  | { state: 'done'; header: ProxyHeader; consumed: number }
  | { state: 'error'; reason: string };

const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');
/** Spec §2.1: the longest v1 line, "PROXY TCP6" with two full IPv6 addresses and ports, CRLF included. */
const V1_MAX_BYTES = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;
const NEED_MORE: ProxyHeaderResult = { state: 'need-more' };

const fail = (reason: string): ProxyHeaderResult => ({ state: 'error', reason });

/** True when `buf` is a prefix of `signature` or starts with all of it. */
function matchesPrefix(buf: Buffer, signature: Buffer): boolean {
  const n = Math.min(buf.length, signature.length);
  return buf.subarray(0, n).equals(signature.subarray(0, n));
}

/** Parse a PROXY header at the start of `buf` (everything read so far). Pure: call again with more bytes on need-more. */
export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (buf.length === 0) return NEED_MORE;
  if (matchesPrefix(buf, V1_SIGNATURE)) return buf.length < V1_SIGNATURE.length ? NEED_MORE : parseV1(buf);
  if (matchesPrefix(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? NEED_MORE : parseV2(buf);
  return fail('not a PROXY protocol header');
}

function parseV1(buf: Buffer): ProxyHeaderResult {
  // The CR may sit at index 105 at the latest, so CRLF ends within 107 bytes.
  const limit = Math.min(buf.length, V1_MAX_BYTES - 1);
  let end = -1;
  for (let i = 0; i < limit; i++) {
    const b = buf[i]!;
    if (b === 0x0d) {
      if (i + 1 >= buf.length) return NEED_MORE;
      if (buf[i + 1] !== 0x0a) return fail('v1: CR not followed by LF');
      end = i;
      break;
    }
    if (b < 0x20 || b > 0x7e) return fail('v1: invalid byte in header');
  }
  if (end < 0) return buf.length >= V1_MAX_BYTES - 1 ? fail('v1: header longer than 107 bytes') : NEED_MORE;
  const consumed = end + 2;
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  // Spec §2.1: after UNKNOWN the receiver ignores everything up to CRLF.
  if (parts[1] === 'UNKNOWN') return { state: 'done', header: { version: 1, command: 'PROXY', family: 'unknown' }, consumed };
  if (parts.length !== 6) return fail('v1: wrong number of fields');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  let family: 'tcp4' | 'tcp6';
  if (proto === 'TCP4' && isIPv4(src) && isIPv4(dst)) family = 'tcp4';
  // Node's isIPv6 also takes a zone id (fe80::1%eth0), which no address on the wire carries and a backend cannot parse.
  else if (proto === 'TCP6' && isIPv6(src) && isIPv6(dst) && !src.includes('%') && !dst.includes('%')) family = 'tcp6';
  else return fail('v1: bad protocol or address');
  const sp = parsePort(sport);
  const dp = parsePort(dport);
  if (sp === null || dp === null) return fail('v1: bad port');
  return { state: 'done', header: { version: 1, command: 'PROXY', family, source: { address: src, port: sp }, destination: { address: dst, port: dp } }, consumed };
}

function parsePort(text: string): number | null {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function parseV2(buf: Buffer): ProxyHeaderResult {
  if (buf.length > 12) {
    const verCmd = buf[12]!;
    if (verCmd >> 4 !== 2) return fail('v2: unsupported version');
    if ((verCmd & 0x0f) > 1) return fail('v2: unknown command');
  }
  if (buf.length > 13) {
    const fam = buf[13]!;
    if (fam >> 4 > 3 || (fam & 0x0f) > 2) return fail('v2: unknown address family or transport');
  }
  if (buf.length < V2_FIXED_BYTES) return NEED_MORE;
  const local = (buf[12]! & 0x0f) === 0;
  const fam = buf[13]!;
  const consumed = V2_FIXED_BYTES + buf.readUInt16BE(14);
  if (buf.length < consumed) return { state: 'need-more', needed: consumed };
  if (local) return { state: 'done', header: { version: 2, command: 'LOCAL', family: 'unknown' }, consumed };
  const body = buf.subarray(V2_FIXED_BYTES, consumed);
  // Spec §2.2: only TCP over IPv4/IPv6 carries addresses we use; UNSPEC, UNIX and DGRAM keep the real endpoints.
  if (fam === 0x11) {
    if (body.length < 12) return fail('v2: address block too short for IPv4');
    if (!tlvsFit(body.subarray(12))) return fail('v2: malformed TLV');
    const source = { address: formatIPv4(body.subarray(0, 4)), port: body.readUInt16BE(8) };
    const destination = { address: formatIPv4(body.subarray(4, 8)), port: body.readUInt16BE(10) };
    return { state: 'done', header: { version: 2, command: 'PROXY', family: 'tcp4', source, destination }, consumed };
  }
  if (fam === 0x21) {
    if (body.length < 36) return fail('v2: address block too short for IPv6');
    if (!tlvsFit(body.subarray(36))) return fail('v2: malformed TLV');
    const source = { address: formatIPv6(body.subarray(0, 16)), port: body.readUInt16BE(32) };
    const destination = { address: formatIPv6(body.subarray(16, 32)), port: body.readUInt16BE(34) };
    return { state: 'done', header: { version: 2, command: 'PROXY', family: 'tcp6', source, destination }, consumed };
  }
  return { state: 'done', header: { version: 2, command: 'PROXY', family: 'unknown' }, consumed };
}

/** Spec §2.2.7: TLVs (type, 16-bit length, value) must tile the rest of the header exactly; their contents are skipped. */
function tlvsFit(tlvs: Buffer): boolean {
  let pos = 0;
  while (pos < tlvs.length) {
    if (pos + 3 > tlvs.length) return false;
    pos += 3 + tlvs.readUInt16BE(pos + 1);
  }
  return pos === tlvs.length;
}

function formatIPv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

const MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** RFC 5952 text form; IPv4-mapped addresses as ::ffff:a.b.c.d (§5), as Node reports them. */
function formatIPv6(b: Buffer): string {
  if (b.subarray(0, 12).equals(MAPPED_PREFIX)) return `::ffff:${formatIPv4(b.subarray(12))}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** 16 bytes of a valid IPv6 text address (zone id dropped). */
function ipv6Bytes(text: string): Buffer {
  let a = text.split('%')[0]!;
  const lastColon = a.lastIndexOf(':');
  const tail = a.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [p, q, r, s] = tail.split('.').map(Number) as [number, number, number, number];
    a = `${a.slice(0, lastColon + 1)}${((p << 8) | q).toString(16)}:${((r << 8) | s).toString(16)}`;
  }
  const [head, rest] = a.includes('::') ? (a.split('::') as [string, string]) : [a, undefined];
  const hs = head ? head.split(':') : [];
  const ts = rest ? rest.split(':') : [];
  const groups = rest === undefined ? hs : [...hs, ...Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

type NormalAddress = { family: 'ipv4'; address: string } | { family: 'ipv6'; address: string };

/** Validate an address; IPv4-mapped IPv6 becomes plain IPv4. Null when not an IP address. */
function normalizeAddress(text: string): NormalAddress | null {
  const address = text.split('%')[0]!;
  if (isIPv4(address)) return { family: 'ipv4', address };
  if (!isIPv6(address)) return null;
  const b = ipv6Bytes(address);
  if (b.subarray(0, 12).equals(MAPPED_PREFIX)) return { family: 'ipv4', address: formatIPv4(b.subarray(12)) };
  return { family: 'ipv6', address };
}

const trustCache = new WeakMap<readonly string[], BlockList>();

/** Build the matcher for a CIDR list (`10.0.0.0/8`, `2001:db8::/32`, bare addresses); throws CONFIG_INVALID on a bad entry. */
export function buildTrustList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [addr = '', prefixText, extra] = entry.trim().split('/');
    const n = normalizeAddress(addr);
    if (!n || extra !== undefined) throw new ProxyError('CONFIG_INVALID', `not an address or CIDR: ${entry}`);
    if (prefixText === undefined) {
      list.addAddress(n.address, n.family);
      continue;
    }
    let prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    // An IPv4-mapped network (::ffff:a.b.c.d/NN) counts as the IPv4 network a.b.c.d/(NN-96).
    if (n.family === 'ipv4' && !isIPv4(addr)) prefix -= 96;
    if (!(prefix >= 0 && prefix <= (n.family === 'ipv4' ? 32 : 128))) throw new ProxyError('CONFIG_INVALID', `bad prefix length: ${entry}`);
    list.addSubnet(n.address, prefix, n.family);
  }
  return list;
}

/** `::ffff:192.0.2.1` (IPv4-mapped, as Node reports dual-stack peers) → `192.0.2.1`; anything else unchanged. */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return '0.0.0.0'; // a socket that is already gone
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/** Whether `address` (as a socket reports it; ::ffff:a.b.c.d counts as IPv4) lies in one of `cidrs`. */
export function isTrustedSource(address: string, cidrs: readonly string[]): boolean {
  let list = trustCache.get(cidrs);
  if (!list) {
    list = buildTrustList(cidrs);
    trustCache.set(cidrs, list);
  }
  const n = normalizeAddress(address);
  return n !== null && list.check(n.address, n.family);
}

/** Spec §2.2: a LOCAL header (the sender's own connection, e.g. a health probe); the receiver keeps the real endpoints. */
export function encodeProxyV2Local(): Buffer {
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
}

/** Spec §2.2.7: PP2_TYPE_SSL with PP2_CLIENT_SSL set and verify 0: the client's own connection used TLS. */
const SSL_TLV = Buffer.from([0x20, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]);

/** A PROXY v2 header announcing `source` → `destination` over TCP. Mixed families are sent as IPv6 (IPv4-mapped);
 *  an address that is not an IP (never expected from a socket) yields a LOCAL header so the backend sees the proxy.
 *  `ssl`: add the SSL TLV, as HAProxy's send-proxy-v2-ssl does; Dovecot then counts the login as secured, which
 *  `disable_plaintext_auth = yes` requires for a client outside login_trusted_networks. */
export function encodeProxyV2(endpoints: { source: ProxyAddress; destination: ProxyAddress }, opts: { ssl?: boolean } = {}): Buffer {
  const src = normalizeAddress(endpoints.source.address);
  const dst = normalizeAddress(endpoints.destination.address);
  const validPort = (p: number): boolean => Number.isInteger(p) && p >= 0 && p <= 65535;
  if (!src || !dst || !validPort(endpoints.source.port) || !validPort(endpoints.destination.port)) {
    return encodeProxyV2Local();
  }
  const v4 = src.family === 'ipv4' && dst.family === 'ipv4';
  const toBytes = (a: NormalAddress): Buffer => {
    if (v4) return Buffer.from(a.address.split('.').map(Number));
    return ipv6Bytes(a.family === 'ipv4' ? `::ffff:${a.address}` : a.address);
  };
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(endpoints.source.port, 0);
  ports.writeUInt16BE(endpoints.destination.port, 2);
  const body = Buffer.concat([toBytes(src), toBytes(dst), ports, ...(opts.ssl ? [SSL_TLV] : [])]);
  const fixed = Buffer.from([0x21, v4 ? 0x11 : 0x21, 0, 0]);
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}
