// Owns the byte-exact splice between a logged-in client and its backend: backpressure, idle timeout, counters, who closed.
// Must not parse or alter bytes; it only moves them and reports one result when both sides are gone.
import type { Socket } from 'node:net';
import { onRelayBytesCollect, relayBytesTotal } from '../metrics.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { DisconnectReason } from '../errors.js';
import { pipeBulk, type BulkTarget } from './bulk-read.js';
import { writeOrPause } from './backpressure.js';

/** How long queued bytes may take to reach a peer after the other side is gone. */
const FLUSH_MS = 30_000;
/** Idle relays are looked for this often (or at a quarter of the shortest idle timeout, not under MIN_SWEEP_MS). */
const SWEEP_MS = 1000;
const MIN_SWEEP_MS = 10;
/** TCP keepalive on a relayed client, armed by the sweep once the session is quiet (what the listener used to set at accept). */
export const CLIENT_KEEPALIVE_MS = 60_000;

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
  /** Called once with the result when both sides are gone (instead of, or besides, `done`). */
  onDone?: (r: RelayResult) => void;
  /** The same as onDone for an owner object (a session): no closure kept per held relay. */
  owner?: RelayOwner;
}

export interface RelayOwner { relayDone(r: RelayResult): void }

/**
 * Live relays per clock, swept for idleness on one timer: moving a chunk only sets a flag, instead of re-arming a
 * socket timer per chunk. A relay is closed between idleTimeoutMs and idleTimeoutMs + 2 sweeps after its last byte.
 */
class IdleSweep {
  readonly relays = new Set<Relay>();
  private timer: unknown;
  private every = 0;
  constructor(private readonly clock: Clock) {}

  add(r: Relay): void {
    this.relays.add(r);
    const want = Math.max(MIN_SWEEP_MS, Math.min(SWEEP_MS, Math.floor(r.idleMs / 4)));
    if (this.timer !== undefined && want >= this.every) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.every = want;
    this.timer = this.clock.setTimeout(this.tick, want);
  }

  delete(r: Relay): void {
    this.relays.delete(r);
    if (this.relays.size > 0 || this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    const now = this.clock.now();
    for (const r of this.relays) r.checkIdle(now);
    if (this.relays.size > 0) this.timer = this.clock.setTimeout(this.tick, this.every);
  };
}

const sweeps = new Map<Clock, IdleSweep>();

/** Byte counters go into the metric in batches: at the end of a relay and before every scrape. */
onRelayBytesCollect(() => { for (const s of sweeps.values()) for (const r of s.relays) r.flushBytes(); });
const byProtocol = new Map<string, { up: { inc(n: number): void }; down: { inc(n: number): void } }>();
function bytesCounters(protocol: string) {
  let c = byProtocol.get(protocol);
  if (!c) {
    c = { up: relayBytesTotal.labels({ protocol, direction: 'up' }), down: relayBytesTotal.labels({ protocol, direction: 'down' }) };
    byProtocol.set(protocol, c);
  }
  return c;
}

// Listeners are shared functions (the socket is `this`) rather than closures per relay: a held session keeps them all.
const RELAY = Symbol('relay');
type Spliced = Socket & { [RELAY]?: Relay };
function clientData(this: Spliced, d: Buffer): void { this[RELAY]?.up(d); }
function backendData(this: Spliced, d: Buffer): void { this[RELAY]?.down(d); }
function clientDrain(this: Spliced): void { const r = this[RELAY]; if (r && !r.stopped) r.backend.resume(); }
function backendDrain(this: Spliced): void { const r = this[RELAY]; if (r && !r.stopped) r.client.resume(); }
// A client's FIN (a script that pipes its commands and closes its sending side) goes on to the backend; the client
// stays open for the replies until the backend closes (backendEnd), as with a direct connection to the backend.
// A backend that sent its FIN is closed at once when nothing is queued towards it: net would otherwise shut its write
// side down first (allowHalfOpen is off), a shutdown syscall and a callback per socket for a FIN that close() sends too.
function clientEnd(this: Spliced): void { const r = this[RELAY]; if (r) { r.note('client', 'CLIENT_CLOSED'); if (!r.backend.writableEnded) r.backend.end(); } }
function backendEnd(this: Spliced): void { const r = this[RELAY]; if (r) { r.note('backend', 'BACKEND_CLOSED'); r.flushThenClose(r.client); if (closesPlainly(this)) this.destroy(); } }
/**
 * A plain TCP socket with nothing queued can be closed without shutting its write side down first. A TLS socket is
 * ended instead: its end sends the close_notify alert, without which clients report a truncated connection.
 */
function closesPlainly(s: Socket): boolean {
  return s.writableLength === 0 && !s.destroyed && !s.connecting && (s as { encrypted?: boolean }).encrypted !== true;
}
function clientClose(this: Spliced): void { const r = this[RELAY]; if (r) { r.note('client', 'CLIENT_CLOSED'); r.flushThenClose(r.backend); r.closedOne(); } }
function backendClose(this: Spliced): void { const r = this[RELAY]; if (r) { r.note('backend', 'BACKEND_CLOSED'); r.flushThenClose(r.client); r.closedOne(); } }
function clientError(this: Spliced, e: NodeJS.ErrnoException): void { const r = this[RELAY]; if (r) { r.note('client', 'CLIENT_ERROR', e.code ?? e.message); r.destroyBoth(); } }
function backendError(this: Spliced, e: NodeJS.ErrnoException): void { const r = this[RELAY]; if (r) { r.note('backend', 'BACKEND_ERROR', e.code ?? e.message); r.destroyBoth(); } }

export class Relay implements BulkTarget {
  private bytesUp = 0;
  private bytesDown = 0;
  private countedUp = 0;
  private countedDown = 0;
  /** Set by every chunk; the sweep turns it into `lastActive`. */
  private active = false;
  /** TCP keepalive armed on the client (by the first sweep that finds the relay quiet). */
  private keepAlive = false;
  private lastActive: number;
  private closed = false;
  /** The proxy ended the splice: nothing more is read from the backend. */
  stopped = false;
  private closes = 0;
  private first: { closedBy: ClosedBy; reason: DisconnectReason; detail?: string } | undefined;
  private readonly clock: Clock;
  private readonly started: number;
  readonly idleMs: number;
  private readonly protocol: string;
  private readonly idleGoodbye: string | undefined;
  private onDone: ((r: RelayResult) => void) | undefined;
  private readonly owner: RelayOwner | undefined;
  private pending: { up?: Buffer; down?: Buffer } | undefined;
  private donePromise: Promise<RelayResult> | undefined;
  private result: RelayResult | undefined;

  constructor(readonly client: Socket, readonly backend: Socket, opts: RelayOptions) {
    this.clock = opts.clock ?? systemClock;
    this.started = this.clock.now();
    this.lastActive = this.started;
    this.idleMs = opts.idleTimeoutMs;
    this.protocol = opts.protocol;
    this.idleGoodbye = opts.idleGoodbye;
    this.onDone = opts.onDone;
    this.owner = opts.owner;
    this.pending = { ...(opts.pendingUp ? { up: opts.pendingUp } : {}), ...(opts.pendingDown ? { down: opts.pendingDown } : {}) };
  }

  /** Resolves with the result when both sides are gone. */
  get done(): Promise<RelayResult> {
    this.donePromise ??= this.result ? Promise.resolve(this.result) : new Promise((resolve) => {
      const earlier = this.onDone;
      this.onDone = (r) => { earlier?.(r); resolve(r); };
    });
    return this.donePromise;
  }

  start(): void {
    const client = this.client as Spliced;
    const backend = this.backend as Spliced;
    client[RELAY] = this;
    backend[RELAY] = this;
    const pending = this.pending;
    this.pending = undefined;
    if (pending?.up?.length) this.up(pending.up);
    if (pending?.down?.length) this.down(pending.down);
    client.on('data', clientData);
    if (pipeBulk(backend, this)) {
      // Bytes the stream buffered before the bulk path took over go first.
      for (let d = backend.read() as Buffer | null; d !== null; d = backend.read() as Buffer | null) this.down(d);
    } else {
      backend.on('data', backendData);
    }
    client.on('drain', clientDrain);
    backend.on('drain', backendDrain);
    // A half-close is passed on. When one side is gone, what is queued towards the other is still flushed before it
    // closes (a slow client still gets the tail of a FETCH and the LOGOUT reply); errors close both at once.
    // The client's write side stays open after its FIN (net would end it: listeners accept with allowHalfOpen off).
    client.allowHalfOpen = true;
    client.on('end', clientEnd);
    backend.on('end', backendEnd);
    client.on('close', clientClose);
    backend.on('close', backendClose);
    client.on('error', clientError);
    backend.on('error', backendError);
    let sweep = sweeps.get(this.clock);
    if (!sweep) { sweep = new IdleSweep(this.clock); sweeps.set(this.clock, sweep); }
    sweep.add(this);
    client.resume();
    backend.resume();
    // The client half-closed during the login (its 'end' came before the splice): pass its FIN on after the pending bytes.
    if (client.readableEnded) clientEnd.call(client);
  }

  /** Client → backend. Reading pauses only while the backend has not taken a write that went over its high-water mark. */
  up(d: Buffer): void {
    this.bytesUp += d.length;
    this.active = true;
    writeOrPause(this.backend, d, this.client);
  }

  /** Backend → client (the bulk path writes itself and only counts). */
  down(d: Buffer): void {
    this.bytesDown += d.length;
    this.active = true;
    writeOrPause(this.client, d, this.backend);
  }

  /** Bytes the bulk path wrote to the client. */
  countDown(n: number): void {
    this.bytesDown += n;
    this.active = true;
  }

  /** Called by the sweep; closes the relay when neither side moved a byte for idleMs. */
  checkIdle(now: number): void {
    if (this.active) { this.active = false; this.lastActive = now; return; }
    // Keepalive costs four setsockopt calls: paid by sessions that stay (held, idle), not by short ones.
    if (!this.keepAlive) { this.keepAlive = true; this.client.setKeepAlive(true, CLIENT_KEEPALIVE_MS); }
    if (now - this.lastActive >= this.idleMs) this.stop('IDLE_TIMEOUT', this.idleGoodbye);
  }

  /** Add the bytes moved since the last flush to the metric. */
  flushBytes(): void {
    const c = bytesCounters(this.protocol);
    if (this.bytesUp > this.countedUp) { c.up.inc(this.bytesUp - this.countedUp); this.countedUp = this.bytesUp; }
    if (this.bytesDown > this.countedDown) { c.down.inc(this.bytesDown - this.countedDown); this.countedDown = this.bytesDown; }
  }

  note(closedBy: ClosedBy, reason: DisconnectReason, detail?: string): void { this.first ??= { closedBy, reason, ...(detail ? { detail } : {}) }; }

  /** End `s` after its queued bytes are written; destroy it if the peer does not take them within FLUSH_MS. */
  flushThenClose(s: Socket): void {
    if (s.destroyed) return;
    // Nothing queued on plain TCP: close() sends the FIN (no shutdown first).
    if (closesPlainly(s)) { s.destroy(); return; }
    if (!s.writableEnded) s.end();
    if (s.writableFinished) { s.destroy(); return; }
    const timer = this.clock.setTimeout(() => s.destroy(), FLUSH_MS);
    s.once('finish', () => { this.clock.clearTimeout(timer); s.destroy(); });
  }

  destroyBoth(): void {
    if (!this.client.destroyed) this.client.destroy();
    if (!this.backend.destroyed) this.backend.destroy();
  }

  /** The splice is over when both sockets have closed. */
  closedOne(): void {
    if (++this.closes < 2 || this.closed) return;
    this.closed = true;
    sweeps.get(this.clock)?.delete(this);
    this.flushBytes();
    const first = this.first ?? { closedBy: 'proxy' as ClosedBy, reason: 'CLOSED' as const };
    this.result = { bytesUp: this.bytesUp, bytesDown: this.bytesDown, ...first, durationMs: Math.round(this.clock.now() - this.started) };
    this.onDone?.(this.result);
    this.owner?.relayDone(this.result);
  }

  /** The proxy ends the splice: `goodbye` (already formatted) goes to the client, queued bytes are flushed, then both close. */
  stop(reason: DisconnectReason, goodbye?: string): void {
    this.note('proxy', reason);
    this.stopped = true;
    const { client, backend } = this;
    backend.pause();
    backend.removeListener('data', backendData);
    if (goodbye && client.writable) client.write(goodbye);
    this.flushThenClose(client);
    this.flushThenClose(backend);
  }
}
