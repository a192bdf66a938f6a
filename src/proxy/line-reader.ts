// Owns splitting a byte stream into CRLF (or bare LF) lines with a maximum line length, for backend login replies.
// Must not interpret lines; bytes after the last complete line stay available (handed to the relay after login).

export class LineTooLongError extends Error {}

export class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly maxLineBytes: number) {}

  /** Append bytes and return the complete lines (without line ending, decoded as UTF-8). */
  push(chunk: Buffer): string[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = this.buf.indexOf(0x0a, start);
      if (nl < 0) break;
      const end = nl > start && this.buf[nl - 1] === 0x0d ? nl - 1 : nl;
      lines.push(this.buf.subarray(start, end).toString('utf8'));
      start = nl + 1;
    }
    this.buf = this.buf.subarray(start);
    if (this.buf.length > this.maxLineBytes) throw new LineTooLongError(`line over ${this.maxLineBytes} bytes`);
    return lines;
  }

  /** Push that stops after the first complete line; the rest stays buffered (so nothing past a login reply is consumed). */
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
