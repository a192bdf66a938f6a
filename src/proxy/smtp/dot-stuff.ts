// Owns SMTP DATA transparency towards a backend (RFC 5321 §4.5.2): dot-stuffing, CRLF line ends and the final ".", on a stream.
// Must not buffer a message or look at its content beyond line starts and line ends.
import { Transform, type TransformCallback } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const DOT_BUF = Buffer.from('.');
const CRLF_BUF = Buffer.from('\r\n');
const END_BUF = Buffer.from('.\r\n');

/**
 * Incremental stuffer: bytes of the message as the client meant it in, wire bytes out.
 * A bare LF becomes CRLF, so the backend sees the same line structure the stuffing assumed:
 * "\n.\r\n" can never end the data early there (SMTP smuggling).
 */
export class DotStuffer {
  private atLineStart = true;
  private lastWasCR = false;
  private lastWasLF = false;
  private any = false;
  /** Message bytes taken in (before stuffing). */
  bytesIn = 0;

  push(chunk: Buffer): Buffer {
    const len = chunk.length;
    if (len === 0) return Buffer.alloc(0);
    this.bytesIn += len;
    const parts: Buffer[] = [];
    let seg = 0;
    if (this.atLineStart && chunk[0] === DOT) parts.push(DOT_BUF);
    this.atLineStart = false;
    let pos = 0;
    for (;;) {
      const nl = chunk.indexOf(LF, pos);
      if (nl < 0) break;
      const prevIsCR = nl > 0 ? chunk[nl - 1] === CR : this.lastWasCR;
      if (!prevIsCR) {
        parts.push(chunk.subarray(seg, nl), CRLF_BUF);
        seg = nl + 1;
      }
      if (nl + 1 < len) {
        if (chunk[nl + 1] === DOT) {
          parts.push(chunk.subarray(seg, nl + 1), DOT_BUF);
          seg = nl + 1;
        }
      } else {
        this.atLineStart = true;
      }
      pos = nl + 1;
    }
    if (seg < len) parts.push(chunk.subarray(seg));
    this.lastWasCR = chunk[len - 1] === CR;
    this.lastWasLF = chunk[len - 1] === LF;
    this.any = true;
    if (parts.length === 1) return parts[0]!;
    return Buffer.concat(parts);
  }

  /** The end of data: complete a last unterminated line, then "." CRLF. */
  end(): Buffer {
    if (!this.any || this.lastWasLF) return END_BUF;
    if (this.lastWasCR) return Buffer.from('\n.\r\n');
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
