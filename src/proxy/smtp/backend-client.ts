// Owns one logged-in SMTP/LMTP client connection to a backend for the transaction relay: replies with per-step deadlines, commands, DATA.
// Must not decide routing, health or what to tell the client, nor open or log in (backend-session.ts runs SmtpBackendLogin); net errors become ProxyError here.
import type net from 'node:net';
import type { Readable } from 'node:stream';
import { ProxyError, toProxyError } from '../../errors.js';
import type { Clock } from '../../core/clock.js';
import { openBackendSession, type AdmittedRoute, type BackendSessionDeps, type OpenRequest } from '../backend-session.js';
import type { Config } from '../../config/schema.js';
import { DotStuffStream } from './dot-stuff.js';
import { writeOrPause } from '../backpressure.js';
import { ReplyParser } from './reply-parser.js';
import type { BackendReply } from './reply-parser.js';
import { SmtpBackendLogin, type SmtpBackendLoginContext } from './backend-login.js';
import { traceBackendLogin, type SessionTrace } from '../../trace/session-trace.js';

type Waiter = { resolve: (r: BackendReply) => void; reject: (e: ProxyError) => void };

export class SmtpBackendClient {
  private readonly parser = new ReplyParser();
  private readonly queue: BackendReply[] = [];
  private readonly waiters: Waiter[] = [];
  private failure: ProxyError | null = null;
  private readonly onData = (chunk: Buffer): void => this.take(chunk);

  private constructor(private readonly socket: net.Socket, readonly lmtp: boolean, readonly capabilities: ReadonlyMap<string, string[]>, private readonly clock: Clock) {
    socket.setNoDelay(true);
    this.attach(socket);
  }

  /**
   * Open a backend session ready for MAIL through the one backend-session pipeline (connect, SmtpBackendLogin under
   * one budget, health report, login metric); `onNote` gets what is worth a debug line; a traced session's `trace`
   * gets the backend login's lines (credentials redacted).
   */
  static async open(deps: BackendSessionDeps, route: AdmittedRoute, bl: Config['backendLogin'], req: Omit<OpenRequest, 'login'> & { login: Omit<SmtpBackendLoginContext, 'route' | 'client'>; onNote?: (note: string) => void; trace?: SessionTrace }): Promise<SmtpBackendClient> {
    let machine: SmtpBackendLogin | undefined;
    const { trace } = req;
    const session = await openBackendSession(deps, route, bl, {
      ...req,
      login: (r) => {
        machine = new SmtpBackendLogin({ ...req.login, route: r, client: req.client });
        if (!trace) return machine;
        trace.backendStart({ backend: r.backend, host: r.host, port: r.port, protocol: r.protocol });
        return traceBackendLogin(machine, trace);
      },
    });
    for (const note of machine?.notes ?? []) req.onNote?.(note);
    const client = new SmtpBackendClient(session.socket, machine?.lmtp ?? false, machine?.capabilities ?? new Map(), deps.clock);
    if (session.leftover.length) client.take(session.leftover);
    session.socket.resume();
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
        resolve: (r) => { this.clock.clearTimeout(timer); resolve(r); },
        reject: (e) => { this.clock.clearTimeout(timer); reject(e); },
      };
      const timer = this.clock.setTimeout(() => {
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

  has(capability: string): boolean {
    return this.capabilities.has(capability.toUpperCase());
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
      let stall: unknown;
      let done = false;
      let sourceEnded = false;
      const finish = (e?: ProxyError): void => {
        if (done) return;
        done = true;
        this.clock.clearTimeout(stall);
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
        this.clock.clearTimeout(stall);
        stuff.resume();
      };
      const onChunk = (chunk: Buffer): void => {
        if (socket.destroyed) return;
        if (writeOrPause(socket, chunk, stuff)) {
          this.clock.clearTimeout(stall);
          stall = this.clock.setTimeout(() => finish(new ProxyError('BACKEND_UNAVAILABLE', `backend accepted no data for ${stallTimeoutMs} ms`)), Math.max(1, stallTimeoutMs));
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
      this.clock.setTimeout(() => this.socket.destroy(), 2000);
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
