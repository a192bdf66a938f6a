// Owns POP3 pre-login line framing: incremental CRLF (or bare LF) splitting with the line-length limit inside.
// Must not interpret commands or do I/O; bytes in, lines or a too-long marker out, unread bytes kept exact.

export type Pop3LineResult =
  | { kind: 'line'; line: string }
  /** The line exceeded the limit; its remaining bytes up to the next LF are skipped. */
  | { kind: 'too-long' };

const LF = 0x0a;
const CR = 0x0d;
/** RFC 2449 §4: a command line may be 255 octets; never frame tighter than that. */
const MIN_LINE_BYTES = 255;

export class Pop3LineParser {
  private buf: Buffer = Buffer.alloc(0);
  private skipping = false;
  private readonly maxLineBytes: number;

  /** `maxLineBytes` bounds a line's content, without its CRLF. */
  constructor(maxLineBytes: number) {
    this.maxLineBytes = Math.max(MIN_LINE_BYTES, maxLineBytes);
  }

  push(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([this.buf, bytes]);
  }

  /** Next complete line, a too-long marker, or null when more bytes are needed. */
  next(): Pop3LineResult | null {
    for (;;) {
      const lf = this.buf.indexOf(LF);
      if (this.skipping) {
        if (lf < 0) {
          this.buf = Buffer.alloc(0);
          return null;
        }
        this.buf = this.buf.subarray(lf + 1);
        this.skipping = false;
        continue;
      }
      if (lf < 0) {
        // Content can still be ≤ max if the last buffered byte is the CR of a CRLF.
        if (this.buf.length > this.maxLineBytes + 1 || (this.buf.length === this.maxLineBytes + 1 && this.buf[this.maxLineBytes] !== CR)) {
          this.skipping = true;
          this.buf = Buffer.alloc(0);
          return { kind: 'too-long' };
        }
        return null;
      }
      const end = lf > 0 && this.buf[lf - 1] === CR ? lf - 1 : lf;
      const content = this.buf.subarray(0, end);
      this.buf = this.buf.subarray(lf + 1);
      if (content.length > this.maxLineBytes) return { kind: 'too-long' };
      return { kind: 'line', line: content.toString('utf8') };
    }
  }

  /** Bytes received but not yet returned as lines (a partial line included). */
  get buffered(): number {
    return this.buf.length;
  }

  /** Hand over every unread byte (for the relay) and empty the parser. */
  takeRemaining(): Buffer {
    const rest = this.skipping ? Buffer.alloc(0) : this.buf;
    this.buf = Buffer.alloc(0);
    this.skipping = false;
    return Buffer.from(rest);
  }

  /** Drop every unread byte (RFC 2595 §4 / STARTTLS injection: nothing read before TLS survives it). */
  discard(): void {
    this.buf = Buffer.alloc(0);
    this.skipping = false;
  }
}
