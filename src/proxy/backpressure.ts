// Owns the one backpressure rule for writing a chunk from a readable: write it, pause the source while the destination holds it over its mark.
// Must not allocate per chunk, add listeners or timers (the relay calls it for every chunk), nor look at the bytes.
import type { Writable } from 'node:stream';

/**
 * Write `chunk` to `dest`; when it was queued over `dest`'s high-water mark and is still queued, pause `source` and
 * return true. A write that returned false but was already flushed (writableLength 0) does not pause: 'drain' is coming.
 */
export function writeOrPause(dest: Writable, chunk: Buffer, source: { pause(): unknown }): boolean {
  if (dest.write(chunk) || dest.writableLength === 0) return false;
  source.pause();
  return true;
}
