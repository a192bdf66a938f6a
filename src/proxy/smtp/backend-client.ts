// Owns one SMTP/LMTP client connection to a backend: connect, replies with per-step deadlines, EHLO/LHLO, STARTTLS, XCLIENT, AUTH PLAIN, DATA.
// Must not decide routing, health or what to tell the client; net/tls errors are wrapped into ProxyError here.
import type net from 'node:net';
import type { Readable } from 'node:stream';
import { ProxyError, toProxyError } from '../../errors.js';
import type { Route } from '../../directory/backends.js';
import type { ClientEndpoint } from '../protocol.js';
import { connectBackend } from '../backend-connect.js';
import { upgradeClient } from '../starttls.js';
import { TOKEN_ERROR_ACK, encodePlain, encodeTokenResponse, type TokenMechanism } from '../sasl.js';
import { DotStuffStream } from './dot-stuff.js';
import { ReplyParser, parseCapabilities, replyText, type BackendReply } from './reply-parser.js';

type Waiter = { resolve: (r: BackendReply) => void; reject: (e: ProxyError) => void };

/** RFC 3461 §4 xtext, as XCLIENT values need (RFC-less Postfix XCLIENT_README uses it too). */
export function xtext(value: string): string {
  return value.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

export class SmtpBackendClient {
  private socket: net.Socket;
  private parser = new ReplyParser();
  private readonly queue: BackendReply[] = [];
  private readonly waiters: Waiter[] = [];
  private failure: ProxyError | null = null;
  private readonly onData = (chunk: Buffer): void => this.take(chunk);
  capabilities = new Map<string, string[]>();
  /** The backend's greeting text (for logs). */
  greeting = '';

  private constructor(socket: net.Socket, readonly lmtp: boolean) {
    this.socket = socket;
    this.attach(socket);
  }

  /** Connect (TCP, PROXY v2, implicit TLS: backend-connect.ts) within `connectTimeoutMs`, then the greeting within `greetingTimeoutMs`. */
  static async connect(route: Route, opts: { lmtp: boolean; connectTimeoutMs: number; greetingTimeoutMs: number; proxyFor?: ClientEndpoint; clientTls?: boolean }): Promise<SmtpBackendClient> {
    const socket = await connectBackend(route, {
      timeoutMs: Math.max(1, opts.connectTimeoutMs),
      ...(opts.proxyFor ? { proxyFor: opts.proxyFor, clientTls: opts.clientTls === true } : {}),
    });
    socket.setNoDelay(true);
    const client = new SmtpBackendClient(socket, opts.lmtp);
    try {
      const greeting = await client.read(opts.greetingTimeoutMs, 'greeting');
      client.greeting = replyText(greeting, 120);
      if (greeting.code !== 220) throw new ProxyError('BACKEND_UNAVAILABLE', `greeting ${greeting.code} ${client.greeting}`);
    } catch (e) {
      client.destroy();
      throw e;
    }
    return client;
  }

  get alive(): boolean {
    return this.failure === null && !this.socket.destroyed;
  }

  private attach(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('error', (e) => this.fail(toProxyError(e, 'BACKEND_UNAVAILABLE')));
    s.on('close', () => this.fail(new ProxyError('BACKEND_UNAVAILABLE', 'backend closed the connection')));
  }

  private take(chunk: Buffer): void {
    let replies: BackendReply[];
    try {
      replies = this.parser.feed(chunk);
    } catch (e) {
      this.fail(toProxyError(e, 'BACKEND_PROTOCOL'));
      this.socket.destroy();
      return;
    }
    for (const r of replies) {
      const w = this.waiters.shift();
      if (w) w.resolve(r);
      else this.queue.push(r);
    }
  }

  private fail(e: ProxyError): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  /** The next reply, or ProxyError BACKEND_UNAVAILABLE after `timeoutMs` (the connection is then dropped). */
  read(timeoutMs: number, step: string): Promise<BackendReply> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<BackendReply>((resolve, reject) => {
      const w: Waiter = {
        resolve: (r) => { clearTimeout(timer); resolve(r); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        const e = new ProxyError('BACKEND_UNAVAILABLE', `no reply to ${step} within ${timeoutMs} ms`);
        this.fail(e);
        this.socket.destroy();
        reject(e);
      }, Math.max(1, timeoutMs));
      this.waiters.push(w);
    });
  }

  send(line: string): void {
    if (this.failure) return;
    this.socket.write(`${line}\r\n`);
  }

  command(line: string, timeoutMs: number, step = line.split(' ')[0] ?? line): Promise<BackendReply> {
    if (this.failure) return Promise.reject(this.failure);
    this.send(line);
    return this.read(timeoutMs, step);
  }

  /** EHLO (LHLO for LMTP, RFC 2033 §4.1); remembers the capabilities. */
  async hello(name: string, timeoutMs: number): Promise<void> {
    const verb = this.lmtp ? 'LHLO' : 'EHLO';
    const r = await this.command(`${verb} ${name}`, timeoutMs, verb);
    if (r.code !== 250) throw new ProxyError('BACKEND_PROTOCOL', `${verb} answered ${r.code} ${replyText(r, 120)}`);
    this.capabilities = parseCapabilities(r);
  }

  has(capability: string): boolean {
    return this.capabilities.has(capability.toUpperCase());
  }

  /** RFC 3207: STARTTLS, then a TLS handshake on the same socket. The caller says EHLO again (§4.2). */
  async startTls(route: Route, timeoutMs: number): Promise<void> {
    if (!this.has('STARTTLS')) throw new ProxyError('BACKEND_PROTOCOL', 'backend does not offer STARTTLS');
    const r = await this.command('STARTTLS', timeoutMs);
    if (r.code !== 220) throw new ProxyError('BACKEND_UNAVAILABLE', `STARTTLS answered ${r.code} ${replyText(r, 120)}`);
    // Anything the backend sent after its 220 arrived in plaintext: refuse it (RFC 3207 §4.2 / injection).
    if (this.parser.buffered || this.queue.length > 0) throw new ProxyError('BACKEND_PROTOCOL', 'data after STARTTLS reply');
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.removeAllListeners('error');
    raw.removeAllListeners('close');
    raw.on('error', () => undefined); // the TLS socket reports it
    const secure = await upgradeClient(raw, route, Math.max(1, timeoutMs)).catch((e: unknown) => {
      raw.destroy();
      throw toProxyError(e, 'BACKEND_UNAVAILABLE');
    }).catch((e: ProxyError) => {
      this.fail(e);
      throw e;
    });
    this.socket = secure;
    this.parser = new ReplyParser();
    this.capabilities = new Map();
    this.attach(secure);
  }

  /**
   * Postfix-style XCLIENT (XCLIENT_README; Dovecot accepts it from login_trusted_networks).
   * Only attributes the backend advertised are sent. The backend answers 220 and starts a new
   * session, so the caller says EHLO again.
   */
  async xclient(attrs: Record<string, string | undefined>, timeoutMs: number): Promise<boolean> {
    const offered = new Set((this.capabilities.get('XCLIENT') ?? []).map((a) => a.toUpperCase()));
    const parts = Object.entries(attrs)
      .filter((e): e is [string, string] => e[1] !== undefined && offered.has(e[0]))
      .map(([k, v]) => `${k}=${xtext(v)}`);
    if (parts.length === 0) return false;
    const r = await this.command(`XCLIENT ${parts.join(' ')}`, timeoutMs, 'XCLIENT');
    if (r.code !== 220 && r.code !== 250) throw new ProxyError('BACKEND_PROTOCOL', `XCLIENT answered ${r.code} ${replyText(r, 120)}`);
    return true;
  }

  /** RFC 4954 AUTH PLAIN with an initial response (RFC 4616). */
  async authPlain(user: string, password: string, timeoutMs: number): Promise<void> {
    const r = await this.command(`AUTH PLAIN ${encodePlain(user, password)}`, timeoutMs, 'AUTH');
    if (r.code === 235) return;
    if (r.code === 535 || r.code === 534 || r.code === 538) throw new ProxyError('BACKEND_AUTH_FAILED', `AUTH answered ${r.code} ${replyText(r, 120)}`);
    throw new ProxyError(r.code === 454 || r.code >= 500 ? 'BACKEND_UNAVAILABLE' : 'BACKEND_PROTOCOL', `AUTH answered ${r.code} ${replyText(r, 120)}`);
  }

  /** RFC 4954 AUTH with a bearer token (RFC 7628 OAUTHBEARER or XOAUTH2) and an initial response; an error challenge is acknowledged. */
  async authToken(mechanism: TokenMechanism, user: string, token: string, timeoutMs: number): Promise<void> {
    let r = await this.command(`AUTH ${mechanism} ${encodeTokenResponse(mechanism, user, token)}`, timeoutMs, 'AUTH');
    // RFC 7628 §3.2.3: a 334 carries the JSON error; the client answers %x01 (XOAUTH2: an empty line) and gets the failure.
    if (r.code === 334) r = await this.command(mechanism === 'OAUTHBEARER' ? TOKEN_ERROR_ACK : '', timeoutMs, 'AUTH');
    if (r.code === 235) return;
    if (r.code === 535 || r.code === 534 || r.code === 538 || r.code === 334) throw new ProxyError('BACKEND_AUTH_FAILED', `AUTH ${mechanism} answered ${r.code} ${replyText(r, 120)}`);
    throw new ProxyError(r.code === 454 || r.code >= 500 ? 'BACKEND_UNAVAILABLE' : 'BACKEND_PROTOCOL', `AUTH answered ${r.code} ${replyText(r, 120)}`);
  }

  /**
   * Stream a message after the backend's 354: `prefix` (already in wire form, e.g. a Received
   * header) and then `source` through the dot-stuffer, ending with "." CRLF. Resolves with the
   * message bytes taken from `source` once everything is handed to the socket. Backpressure from
   * the backend pauses `source`; a backend that accepts nothing for `stallTimeoutMs` fails the
   * transfer. Rejects if the backend connection fails or `source` closes before its end; the
   * connection is then dropped, so the backend never sees the final dot.
   */
  sendData(source: Readable, prefix: Buffer | null, stallTimeoutMs: number): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const socket = this.socket;
    const stuff = new DotStuffStream();
    return new Promise<number>((resolve, reject) => {
      let stall: NodeJS.Timeout | undefined;
      let done = false;
      let sourceEnded = false;
      const finish = (e?: ProxyError): void => {
        if (done) return;
        done = true;
        clearTimeout(stall);
        socket.off('close', onClose);
        socket.off('error', onClose);
        socket.off('drain', onDrain);
        stuff.off('data', onChunk);
        source.off('end', onSourceEnd);
        source.off('close', onSourceClose);
        if (!e) {
          resolve(stuff.stuffer.bytesIn);
          return;
        }
        source.unpipe(stuff);
        stuff.destroy();
        this.fail(e);
        socket.destroy();
        reject(e);
      };
      const onClose = (): void => finish(this.failure ?? new ProxyError('BACKEND_UNAVAILABLE', 'backend closed the connection during DATA'));
      const onDrain = (): void => {
        clearTimeout(stall);
        stuff.resume();
      };
      const onChunk = (chunk: Buffer): void => {
        if (socket.destroyed) return;
        if (!socket.write(chunk)) {
          stuff.pause();
          clearTimeout(stall);
          stall = setTimeout(() => finish(new ProxyError('BACKEND_UNAVAILABLE', `backend accepted no data for ${stallTimeoutMs} ms`)), Math.max(1, stallTimeoutMs));
          socket.once('drain', onDrain);
        }
      };
      const onSourceEnd = (): void => { sourceEnded = true; };
      const onSourceClose = (): void => {
        if (!sourceEnded) finish(new ProxyError('INTERNAL', 'client went away during DATA'));
      };
      socket.once('close', onClose);
      socket.once('error', onClose);
      source.once('end', onSourceEnd);
      source.once('close', onSourceClose);
      stuff.on('data', onChunk);
      stuff.once('end', () => finish());
      if (prefix) socket.write(prefix);
      source.pipe(stuff);
    });
  }

  /** Polite goodbye: QUIT, then close; never waits for the backend. */
  quit(): void {
    if (this.alive) {
      this.socket.end('QUIT\r\n');
      setTimeout(() => this.socket.destroy(), 2000).unref();
    } else {
      this.socket.destroy();
    }
    this.fail(new ProxyError('BACKEND_UNAVAILABLE', 'connection closed by the proxy'));
  }

  /** Drop the connection at once (abandons a DATA in progress: the backend never sees the final dot). */
  destroy(): void {
    this.fail(new ProxyError('BACKEND_UNAVAILABLE', 'connection dropped by the proxy'));
    this.socket.destroy();
  }
}
