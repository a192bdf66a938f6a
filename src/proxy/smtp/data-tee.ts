// Owns splitting one incoming DATA stream into several streams (one per backend of an LMTP fan-out), with backpressure from the slowest.
// Must not buffer the message beyond the streams' own high-water marks nor look at its bytes.
import { PassThrough } from 'node:stream';
import type { SMTPServerDataStream } from 'smtp-server';

/**
 * `n` branches of `source`: every chunk goes to each branch; the source pauses until every branch that asked for a
 * pause has drained. Each branch reports the source's byteLength and sizeExceeded (smtp-server's counters).
 */
export function teeDataStream(source: SMTPServerDataStream, n: number): SMTPServerDataStream[] {
  if (n === 1) return [source];
  const branches = Array.from({ length: n }, () => {
    const b = new PassThrough();
    Object.defineProperty(b, 'byteLength', { get: () => source.byteLength });
    Object.defineProperty(b, 'sizeExceeded', { get: () => source.sizeExceeded });
    return b;
  });
  let waiting = 0;
  source.on('data', (chunk: Buffer) => {
    for (const b of branches) {
      if (b.destroyed || b.writableEnded) continue;
      if (!b.write(chunk)) {
        waiting++;
        b.once('drain', () => { if (--waiting === 0) source.resume(); });
      }
    }
    if (waiting > 0) source.pause();
  });
  source.on('end', () => { for (const b of branches) if (!b.writableEnded) b.end(); });
  source.on('error', (e) => { for (const b of branches) b.destroy(e); });
  return branches as unknown as SMTPServerDataStream[];
}
