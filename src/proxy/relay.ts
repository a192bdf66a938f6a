// Owns the byte-exact splice between a logged-in client and its backend: backpressure, idle timeout, counters, who closed.
// Must not parse or alter bytes; it only moves them and reports one result when both sides are gone.
import type { Socket } from 'node:net';
import { relayBytesTotal } from '../metrics.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { DisconnectReason } from '../errors.js';

/** How long queued bytes may take to reach a peer after the other side is gone. */
const FLUSH_MS = 30_000;

export type ClosedBy = 'client' | 'backend' | 'proxy';

export interface RelayResult {
  bytesUp: number;     // client → backend
  bytesDown: number;   // backend → client
  closedBy: ClosedBy;
  reason: DisconnectReason;
  /** Socket error code, when an error ended it (logs only). */
  detail?: string;
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
  clock?: Clock;
}

export class Relay {
  private bytesUp = 0;
  private bytesDown = 0;
  private closed = false;
  private readonly clock: Clock;
  private readonly started: number;
  readonly done: Promise<RelayResult>;
  private finish!: (r: RelayResult) => void;

  constructor(private readonly client: Socket, private readonly backend: Socket, private readonly opts: RelayOptions) {
    this.clock = opts.clock ?? systemClock;
    this.started = this.clock.now();
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
    client.once('end', () => { this.note('client', 'CLIENT_CLOSED'); backend.end(); });
    backend.once('end', () => { this.note('backend', 'BACKEND_CLOSED'); client.end(); });
    client.once('close', () => { this.note('client', 'CLIENT_CLOSED'); this.flushThenClose(backend); this.closedOne(); });
    backend.once('close', () => { this.note('backend', 'BACKEND_CLOSED'); this.flushThenClose(client); this.closedOne(); });
    client.on('error', (e: NodeJS.ErrnoException) => { this.note('client', 'CLIENT_ERROR', e.code ?? e.message); this.destroyBoth(); });
    backend.on('error', (e: NodeJS.ErrnoException) => { this.note('backend', 'BACKEND_ERROR', e.code ?? e.message); this.destroyBoth(); });
    // A socket's timeout counts reads and writes, so client-side inactivity means neither direction moved.
    client.setTimeout(opts.idleTimeoutMs, () => this.stop('IDLE_TIMEOUT', this.opts.idleGoodbye));
    client.resume();
    backend.resume();
  }

  private forward(d: Buffer, to: Socket, from: Socket, dir: 'up' | 'down'): void {
    if (dir === 'up') this.bytesUp += d.length; else this.bytesDown += d.length;
    relayBytesTotal.inc({ protocol: this.opts.protocol, direction: dir }, d.length);
    if (!to.write(d)) from.pause();
  }

  private first: { closedBy: ClosedBy; reason: DisconnectReason; detail?: string } | undefined;
  private note(closedBy: ClosedBy, reason: DisconnectReason, detail?: string): void { this.first ??= { closedBy, reason, ...(detail ? { detail } : {}) }; }

  private closes = 0;

  /** End `s` after its queued bytes are written; destroy it if the peer does not take them within FLUSH_MS. */
  private flushThenClose(s: Socket): void {
    if (s.destroyed) return;
    s.end();
    if (s.writableFinished) { s.destroy(); return; }
    const timer = this.clock.setTimeout(() => s.destroy(), FLUSH_MS);
    s.once('finish', () => { this.clock.clearTimeout(timer); s.destroy(); });
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
    const first = this.first ?? { closedBy: 'proxy' as ClosedBy, reason: 'CLOSED' as const };
    this.finish({ bytesUp: this.bytesUp, bytesDown: this.bytesDown, ...first, durationMs: Math.round(this.clock.now() - this.started) });
  }

  /** The proxy ends the splice: `goodbye` (already formatted) goes to the client, queued bytes are flushed, then both close. */
  stop(reason: DisconnectReason, goodbye?: string): void {
    this.note('proxy', reason);
    const { client, backend } = this;
    backend.pause();
    backend.removeAllListeners('data');
    if (goodbye && client.writable) client.write(goodbye);
    this.flushThenClose(client);
    this.flushThenClose(backend);
  }
}
