// Owns the byte-exact splice between a logged-in client and its backend: backpressure, idle timeout, counters, who closed.
// Must not parse or alter bytes; it only moves them and reports one result when both sides are gone.
import type { Socket } from 'node:net';
import { relayBytesTotal } from '../metrics.js';

/** How long queued bytes may take to reach a peer after the other side is gone. */
const FLUSH_MS = 30_000;

export type ClosedBy = 'client' | 'backend' | 'proxy';

export interface RelayResult {
  bytesUp: number;     // client → backend
  bytesDown: number;   // backend → client
  closedBy: ClosedBy;
  reason: string;
  durationMs: number;
}

export interface RelayOptions {
  protocol: string;
  idleTimeoutMs: number;
  /** Client bytes read before the splice started (pipelined after the login command). */
  pendingUp?: Buffer;
  /** Backend bytes read past its login reply. */
  pendingDown?: Buffer;
  /** Sent to the client when the idle timeout closes the splice. */
  idleGoodbye?: string;
}

export class Relay {
  private bytesUp = 0;
  private bytesDown = 0;
  private closed = false;
  private readonly started = performance.now();
  readonly done: Promise<RelayResult>;
  private finish!: (r: RelayResult) => void;

  constructor(private readonly client: Socket, private readonly backend: Socket, private readonly opts: RelayOptions) {
    this.done = new Promise((r) => { this.finish = r; });
  }

  start(): void {
    const { client, backend, opts } = this;
    if (opts.pendingUp?.length) this.forward(opts.pendingUp, backend, client, 'up');
    if (opts.pendingDown?.length) this.forward(opts.pendingDown, client, backend, 'down');
    client.on('data', (d: Buffer) => this.forward(d, backend, client, 'up'));
    backend.on('data', (d: Buffer) => this.forward(d, client, backend, 'down'));
    client.on('drain', () => backend.resume());
    backend.on('drain', () => client.resume());
    // A half-close is passed on. When one side is gone, what is queued towards the other is still flushed before it
    // closes (a slow client still gets the tail of a FETCH and the LOGOUT reply); errors close both at once.
    client.once('end', () => { this.note('client', 'client closed'); backend.end(); });
    backend.once('end', () => { this.note('backend', 'backend closed'); client.end(); });
    client.once('close', () => { this.note('client', 'client connection closed'); this.flushThenClose(backend); this.closedOne(); });
    backend.once('close', () => { this.note('backend', 'backend connection closed'); this.flushThenClose(client); this.closedOne(); });
    client.on('error', (e: NodeJS.ErrnoException) => { this.note('client', `client error ${e.code ?? e.message}`); this.destroyBoth(); });
    backend.on('error', (e: NodeJS.ErrnoException) => { this.note('backend', `backend error ${e.code ?? e.message}`); this.destroyBoth(); });
    // A socket's timeout counts reads and writes, so client-side inactivity means neither direction moved.
    client.setTimeout(opts.idleTimeoutMs, () => this.stop('idle timeout', this.opts.idleGoodbye));
    client.resume();
    backend.resume();
  }

  private forward(d: Buffer, to: Socket, from: Socket, dir: 'up' | 'down'): void {
    if (dir === 'up') this.bytesUp += d.length; else this.bytesDown += d.length;
    relayBytesTotal.inc({ protocol: this.opts.protocol, direction: dir }, d.length);
    if (!to.write(d)) from.pause();
  }

  private first: { closedBy: ClosedBy; reason: string } | undefined;
  private note(closedBy: ClosedBy, reason: string): void { this.first ??= { closedBy, reason }; }

  private closes = 0;

  /** End `s` after its queued bytes are written; destroy it if the peer does not take them within FLUSH_MS. */
  private flushThenClose(s: Socket): void {
    if (s.destroyed) return;
    s.end();
    if (s.writableFinished) { s.destroy(); return; }
    const timer = setTimeout(() => s.destroy(), FLUSH_MS);
    timer.unref();
    s.once('finish', () => { clearTimeout(timer); s.destroy(); });
  }

  private destroyBoth(): void {
    if (!this.client.destroyed) this.client.destroy();
    if (!this.backend.destroyed) this.backend.destroy();
  }

  /** The splice is over when both sockets have closed. */
  private closedOne(): void {
    if (++this.closes < 2 || this.closed) return;
    this.closed = true;
    this.client.setTimeout(0);
    const first = this.first ?? { closedBy: 'proxy' as ClosedBy, reason: 'closed' };
    this.finish({ bytesUp: this.bytesUp, bytesDown: this.bytesDown, ...first, durationMs: Math.round(performance.now() - this.started) });
  }

  /** The proxy ends the splice: `goodbye` (already formatted) goes to the client, queued bytes are flushed, then both close. */
  stop(reason: string, goodbye?: string): void {
    this.note('proxy', reason);
    const { client, backend } = this;
    backend.pause();
    backend.removeAllListeners('data');
    if (goodbye && client.writable) client.write(goodbye);
    this.flushThenClose(client);
    this.flushThenClose(backend);
  }
}
