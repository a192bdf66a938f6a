// Owns accepting TCP connections on one configured listener: PROXY protocol header (trusted sources only), ids, metrics.
// Must not speak mail protocols beyond a one-line refusal; it hands each socket to the protocol's ConnectionHandler.
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.js';
import type { ListenerConfig } from '../config/schema.js';
import { CATALOGUE, type ErrorCode } from '../errors.js';
import { connectionsRefusedTotal, connectionsTotal } from '../metrics.js';
import type { ConnectionHandler } from './protocol.js';
import type { ClientEndpoint } from '../core/types.js';
import { isTrustedSource, parseProxyHeader, plainAddress } from '../core/proxy-header.js';
import { bye as sieveBye } from './sieve/replies.js';
import { CLIENT_KEEPALIVE_MS } from './relay.js';

const PROXY_HEADER_DEADLINE_MS = 5000;
const PROXY_HEADER_MAX_BYTES = 16 + 65535;
const REFUSAL_LINGER_MS = 1000;

/** Random bytes for connection ids, fetched 1,024 ids at a time (one getrandom per id cost a syscall per connection). */
const ID_BYTES = 6;
const ID_POOL = 1024;
let idPool = Buffer.alloc(0);
let idAt = 0;

export function newConnectionId(): string {
  if (idAt >= idPool.length) { idPool = randomBytes(ID_BYTES * ID_POOL); idAt = 0; }
  const id = idPool.toString('hex', idAt, idAt + ID_BYTES);
  idAt += ID_BYTES;
  return id;
}


/** One-line refusal in the listener's protocol (before any dialogue exists). */
export function refusal(protocol: ListenerConfig['protocol'], code: ErrorCode): string {
  const spec = CATALOGUE[code];
  if (protocol === 'imap') return `* ${spec.imap}\r\n`;
  if (protocol === 'pop3') return `${spec.pop3}\r\n`;
  if (protocol === 'sieve') return sieveBye(code);
  return `${spec.smtp}\r\n`;
}

/** The client address a connection is counted under (per-IP limit), kept on the socket until it closes. */
const COUNTED_AS = Symbol('countedAs');
type CountedSocket = Socket & { [COUNTED_AS]?: string };
const ignore = (): void => undefined;
/** Protocols whose logged-in clients are spliced by a Relay (which arms their keepalive). */
const RELAYED: ReadonlySet<string> = new Set(['imap', 'pop3', 'sieve']);

export class Listener {
  readonly server: Server;
  private log: Logger;
  private cfg: ListenerConfig;

  constructor(config: ListenerConfig, private readonly handler: () => ConnectionHandler, private readonly logger: Logger) {
    this.cfg = config;
    this.log = logger.child({ listener: `${config.protocol}/${config.address}:${config.port}` });
    // TCP keepalive: IMAP/POP3/ManageSieve clients get it from their relay once quiet (relay.ts), SMTP ones at accept.
    this.server = createServer({ noDelay: true }, (s) => this.accept(s));
    this.server.on('error', (e) => this.log.error({ err: e.message }, 'listener error'));
  }

  get config(): ListenerConfig { return this.cfg; }

  /**
   * SIGHUP: new settings for the same socket (address and port unchanged): protocol, TLS mode, PROXY protocol and
   * trusted networks, limits. They apply to connections accepted from now on; open ones keep what they started with.
   */
  update(config: ListenerConfig): void {
    this.cfg = config;
    this.log = this.logger.child({ listener: `${config.protocol}/${config.address}:${config.port}` });
  }

  /** Where the socket is bound (the actual port when the config says 0); set by listen(). */
  local: { address: string; port: number } | undefined;
  /** `local` when it is one address (not a wildcard): every accepted connection's local end. */
  private fixedLocal: { address: string; port: number } | undefined;

  listen(): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.config.address, port: this.config.port }, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        this.local = typeof a === 'object' && a ? { address: a.address, port: a.port } : { address: this.config.address, port: this.config.port };
        const wildcard = this.local.address === '0.0.0.0' || this.local.address === '::' || isIP(this.local.address) === 0;
        this.fixedLocal = wildcard ? undefined : { address: plainAddress(this.local.address), port: this.local.port };
        resolve(this.local);
      });
    });
  }

  /** Stop accepting at once; open connections are left to their sessions (server.close's callback would wait for them). */
  close(): Promise<void> {
    if (this.server.listening) this.server.close();
    return Promise.resolve();
  }

  private accept(socket: Socket): void {
    connectionsTotal.inc({ protocol: this.config.protocol });
    if (!RELAYED.has(this.config.protocol)) socket.setKeepAlive(true, CLIENT_KEEPALIVE_MS);
    socket.on('error', ignore);
    // Reset before we saw it (a load balancer's connect-only health check closes with RST at once): no peer address, so
    // nothing to serve or log; it would pass for a client 0.0.0.0 (an untrusted PROXY source, a session from 0.0.0.0).
    if (socket.remoteAddress === undefined) { socket.destroy(); return; }
    const id = newConnectionId();
    const client: ClientEndpoint = {
      address: plainAddress(socket.remoteAddress), port: socket.remotePort ?? 0,
      // A listener bound to one address knows where every connection arrived (saves a getsockname per connection).
      localAddress: this.fixedLocal?.address ?? plainAddress(socket.localAddress), localPort: this.fixedLocal?.port ?? socket.localPort ?? 0,
    };
    if (!this.config.proxyProtocol) return this.handOver(socket, id, client);
    if (!isTrustedSource(client.address, this.config.proxyTrustedNetworks)) {
      this.log.warn({ conn: id, client: client.address }, 'PROXY header from untrusted source refused');
      this.refuse(socket, 'UNTRUSTED_SOURCE');
      return;
    }
    this.readProxyHeader(socket, id, client);
  }

  private readProxyHeader(socket: Socket, id: string, peer: ClientEndpoint): void {
    // Chunks are kept as they come and joined only when a parse can finish: a header sent a byte a write costs linear,
    // not quadratic, copying (a v2 header with TLVs may be 64 KiB).
    const chunks: Buffer[] = [];
    let length = 0;
    let needed = 0;
    const timer = setTimeout(() => fail('no PROXY header in time'), this.config.proxyHeaderTimeoutMs ?? PROXY_HEADER_DEADLINE_MS);
    const fail = (reason: string) => {
      clearTimeout(timer);
      socket.off('data', onData);
      this.log.warn({ conn: id, client: peer.address, reason }, 'invalid PROXY header');
      this.refuse(socket, 'PROXY_HEADER_INVALID');
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length > PROXY_HEADER_MAX_BYTES) return fail('header too large');
      if (length < needed) return;
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      chunks.length = 0;
      chunks.push(buf);
      const r = parseProxyHeader(buf);
      if (r.state === 'need-more') { needed = r.needed ?? 0; return; }
      if (r.state === 'error') return fail(r.reason);
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      const rest = buf.subarray(r.consumed);
      if (rest.length) socket.unshift(rest);
      const h = r.header;
      const client: ClientEndpoint = h.command === 'PROXY' && h.source && h.destination
        ? { address: plainAddress(h.source.address), port: h.source.port, localAddress: plainAddress(h.destination.address), localPort: h.destination.port }
        : peer;
      this.handOver(socket, id, client);
    };
    socket.on('data', onData);
    socket.once('close', () => clearTimeout(timer));
  }

  /** One refusal line, then close; a peer that never closes its side (half-open) is cut off after REFUSAL_LINGER_MS. */
  private refuse(socket: Socket, code: ErrorCode): void {
    socket.end(refusal(this.config.protocol, code));
    setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
  }

  private open = 0;
  private readonly perIp = new Map<string, number>();
  private readonly onCountedClose = ((listener: Listener) => function (this: CountedSocket): void { listener.release(this[COUNTED_AS]); })(this);

  private release(address: string | undefined): void {
    if (address === undefined) return;
    this.open--;
    const n = (this.perIp.get(address) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(address); else this.perIp.set(address, n);
  }

  private handOver(socket: Socket, id: string, client: ClientEndpoint): void {
    // Limits count the real client (after a PROXY header); a refused connection gets one temporary-error line.
    const maxConnections = this.config.maxConnections ?? 0;
    const maxConnectionsPerIp = this.config.maxConnectionsPerIp ?? 0;
    const fromIp = this.perIp.get(client.address) ?? 0;
    if ((maxConnections > 0 && this.open >= maxConnections) || (maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp)) {
      this.log.warn({ conn: id, client: client.address, open: this.open, fromIp }, 'connection limit reached');
      connectionsRefusedTotal.inc({ protocol: this.config.protocol, reason: this.open >= maxConnections && maxConnections > 0 ? 'max_connections' : 'max_connections_per_ip' });
      this.refuse(socket, 'TOO_MANY_CONNECTIONS');
      return;
    }
    this.open++;
    this.perIp.set(client.address, fromIp + 1);
    (socket as CountedSocket)[COUNTED_AS] = client.address;
    // One handler per listener (not a closure per connection): it stays on every held socket.
    socket.on('close', this.onCountedClose);
    try {
      this.handler().handle(socket, { id, client, listener: this.config });
    } catch (e) {
      this.log.error({ conn: id, err: (e as Error).message }, 'handler failed');
      socket.destroy();
    }
  }
}
