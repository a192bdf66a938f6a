// Owns SMTP DATA transparency towards a backend (RFC 5321 §4.5.2): dot-stuffing, CRLF line ends and the final ".", on a stream.
// Must not buffer a message or look at its content beyond line starts and line ends.
import { Transform, type TransformCallback } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const DOT_BUF = Buffer.from('.');
const CRLF_BUF = Buffer.from('\r\n');
const LF_BUF = Buffer.from('\n');
const END_BUF = Buffer.from('.\r\n');

/**
 * Incremental stuffer: bytes of the message as the client meant it in, wire bytes out.
 * A bare LF and a bare CR each become CRLF (RFC 5321 §2.3.8 allows CR and LF only together), so the backend sees the
 * same line structure the stuffing assumed: neither "\n.\r\n" nor "\r.\r" can end the data early at a backend that
 * takes a lone LF or CR for a line end (SMTP smuggling), and a dot after either is stuffed.
 */
export class DotStuffer {
  private atLineStart = true;
  /** The last chunk ended in a CR (already sent): the next byte decides whether it was a bare CR. */
  private pendingCR = false;
  private any = false;
  /** Message bytes taken in (before stuffing). */
  bytesIn = 0;

  push(chunk: Buffer): Buffer {
    const len = chunk.length;
    if (len === 0) return Buffer.alloc(0);
    this.bytesIn += len;
    this.any = true;
    const parts: Buffer[] = [];
    let seg = 0;
    let pos = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      // Completes the CR sent with the last chunk: with its own LF, or with one added for a bare CR.
      parts.push(LF_BUF);
      if (chunk[0] === LF) seg = pos = 1;
      this.atLineStart = true;
    }
    let nextCR = chunk.indexOf(CR, pos);
    let nextLF = chunk.indexOf(LF, pos);
    for (;;) {
      if (this.atLineStart) {
        if (pos >= len) break;
        if (chunk[pos] === DOT) {
          parts.push(chunk.subarray(seg, pos), DOT_BUF);
          seg = pos;
        }
        this.atLineStart = false;
      }
      if (nextCR >= 0 && nextCR < pos) nextCR = chunk.indexOf(CR, pos);
      if (nextLF >= 0 && nextLF < pos) nextLF = chunk.indexOf(LF, pos);
      const end = nextCR < 0 ? nextLF : nextLF < 0 ? nextCR : Math.min(nextCR, nextLF);
      if (end < 0) break;
      if (chunk[end] === LF) {
        // A bare LF (the LF of a CRLF is taken with its CR).
        parts.push(chunk.subarray(seg, end), CRLF_BUF);
        seg = pos = end + 1;
      } else if (end + 1 >= len) {
        this.pendingCR = true;
        break;
      } else if (chunk[end + 1] === LF) {
        pos = end + 2;
      } else {
        parts.push(chunk.subarray(seg, end + 1), LF_BUF);
        seg = pos = end + 1;
      }
      this.atLineStart = true;
    }
    if (seg < len) parts.push(chunk.subarray(seg));
    if (parts.length === 1) return parts[0]!;
    return Buffer.concat(parts);
  }

  /** The end of data: complete a last unterminated line, then "." CRLF. */
  end(): Buffer {
    if (this.pendingCR) return Buffer.from('\n.\r\n');
    if (!this.any || this.atLineStart) return END_BUF;
    return Buffer.concat([CRLF_BUF, END_BUF]);
  }
}

/** A Transform stream around DotStuffer; its output ends with the terminating ".\r\n". */
export class DotStuffStream extends Transform {
  readonly stuffer = new DotStuffer();
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.stuffer.push(chunk);
    if (out.length > 0) this.push(out);
    cb();
  }
  override _flush(cb: TransformCallback): void {
    this.push(this.stuffer.end());
    cb();
  }
}

/** Whole-buffer helper (tests, small messages): the wire form of `message`. */
export function dotStuff(message: Buffer): Buffer {
  const s = new DotStuffer();
  return Buffer.concat([s.push(message), s.end()]);
}
