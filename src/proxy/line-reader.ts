// Owns splitting a byte stream into CRLF (or bare LF) lines with a maximum line length, for backend login replies.
// Must not interpret lines; bytes after the last complete line stay available (handed to the relay after login).

export class LineTooLongError extends Error {}

export class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly maxLineBytes: number) {}

  /** Append bytes (if any) and return the first complete line, or null; the rest stays buffered (nothing past a login reply is consumed). */
  pushOne(chunk: Buffer | null): string | null {
    if (chunk) this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const nl = this.buf.indexOf(0x0a);
    if (nl < 0) {
      if (this.buf.length > this.maxLineBytes) throw new LineTooLongError(`line over ${this.maxLineBytes} bytes`);
      return null;
    }
    const end = nl > 0 && this.buf[nl - 1] === 0x0d ? nl - 1 : nl;
    const line = this.buf.subarray(0, end).toString('utf8');
    this.buf = this.buf.subarray(nl + 1);
    return line;
  }

  /** Bytes received after the last line returned. */
  rest(): Buffer { const r = this.buf; this.buf = Buffer.alloc(0); return r; }
}
