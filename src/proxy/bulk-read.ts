// Owns large reads on plain-TCP backend connections: reads land in one shared 16 KiB buffer (copied out) and, while data
// streams, in a 256 KiB buffer of the connection's own, so a 10 MiB FETCH is a few dozen reads and writes instead of 160+.
// Must not look at the bytes nor hold a buffer while the connection is quiet; TLS connections never use it.
import { connect, type Socket } from 'node:net';

/** Every quiet connection's next read goes here; a read is copied out before its callback returns. */
const SMALL = Buffer.allocUnsafe(16 * 1024);
const BIG_BYTES = 256 * 1024;
/** Big buffers kept for reuse by the next burst (at most 2 MiB idle). */
const POOL_MAX = 8;
const pool: Buffer[] = [];

const takeBig = (): Buffer => pool.pop() ?? Buffer.allocUnsafe(BIG_BYTES);
const giveBig = (b: Buffer): void => { if (pool.length < POOL_MAX) pool.push(b); };

/** Where a relay wants the bytes: written to `client`; `countDown` sees each read's size. */
export interface BulkTarget { readonly client: Socket; countDown(n: number): void }

const READER = Symbol('bulkReader');
type BulkSocket = Socket & { [READER]?: BulkReader };

class BulkReader {
  /** The buffer the next read goes into (the generator hands it to Node after each read). */
  next: Buffer = SMALL;
  target: BulkTarget | undefined;
  socket!: Socket;

  /** One read of `n` bytes into `buf`; false stops reading until someone resumes the socket. */
  onRead(n: number, buf: Buffer): boolean {
    const target = this.target;
    if (target === undefined) {
      // Before a relay takes over (backend login): ordinary stream semantics, 'data' events and backpressure.
      return this.socket.push(Buffer.from(buf.subarray(0, n)));
    }
    const owned = buf !== SMALL;
    target.countDown(n);
    const ok = target.client.write(owned ? buf.subarray(0, n) : Buffer.from(buf.subarray(0, n)));
    const queued = target.client.writableLength > 0;
    if (!owned) {
      if (n === SMALL.length) this.next = takeBig(); // a burst: read the rest in big pieces
      return ok || !queued;
    }
    if (queued && !ok) return false; // wait for 'drain' (the queued write, which holds `buf`, is done by then)
    if (queued) { this.next = takeBig(); return true; } // `buf` belongs to the queued write now
    if (n < SMALL.length) { giveBig(buf); this.next = SMALL; } // the burst is over
    return true;
  }
}

/** net calls the `onread` callback on the socket: one shared function instead of a closure per connection. */
function bulkRead(this: BulkSocket, n: number, buf: Uint8Array): boolean { return this[READER]!.onRead(n, buf as Buffer); }

/** A plain TCP connection whose reads go through a BulkReader (net.connect's `onread`). */
export function connectBulk(host: string, port: number, localAddress?: string): Socket {
  const reader = new BulkReader();
  const socket = connect({
    host, port, noDelay: true, ...(localAddress ? { localAddress } : {}),
    onread: { buffer: () => reader.next, callback: bulkRead },
  }) as BulkSocket;
  reader.socket = socket;
  socket[READER] = reader;
  return socket;
}

/**
 * Send everything `socket` reads straight to `target.to`, skipping the stream machinery; false when `socket` is not a
 * bulk connection (the caller uses 'data' events). Bytes already buffered by the stream are the caller's to read first.
 */
export function pipeBulk(socket: Socket, target: BulkTarget): boolean {
  const reader = (socket as BulkSocket)[READER];
  if (reader === undefined) return false;
  reader.target = target;
  return true;
}
