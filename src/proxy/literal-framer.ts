// Owns incremental framing of IMAP/ManageSieve commands (lines, {n}/{n+} literals, line and literal limits, skipping a rejected command's rest) and the quoted-string scan.
// Must not tokenise or know any command grammar or reply; bad input becomes a result value, never an exception.

/** One command's pieces in order: line segments (a segment followed by a literal ends in its `{n}` marker) and literal payloads. */
export type FramePart = { seg: Buffer } | { lit: Buffer };

export type FrameError = 'LINE_TOO_LONG' | 'LITERAL_TOO_LARGE';

export type FrameResult =
  | { type: 'command'; parts: FramePart[] }
  /** A synchronising literal was accepted: the server must send a continuation before the client sends it (RFC 9051 §7.5). */
  | { type: 'continue' }
  /**
   * `head`: the command's first line segment, or the start of the buffered bytes when none was complete (the grammar reads
   * its tag from it). `fatal`: an over-limit literal is already on its way, so the stream cannot be resynchronised.
   */
  | { type: 'error'; error: FrameError; head: Buffer; fatal: boolean };

export type RawLineResult = { type: 'line'; text: string } | { type: 'error'; error: 'LINE_TOO_LONG' };

export interface FramerOptions {
  maxLineBytes: number;
  maxLiteralBytes: number;
  /**
   * IMAP: `{n}` waits for a continuation (`continue` result) and only `{n+}` is in flight. ManageSieve has no continuation
   * (RFC 5804 §4): every literal is sent at once.
   */
  synchronising: boolean;
}

const LF = 0x0a;
const CR = 0x0d;
export const LITERAL_TAIL_RE = /\{(\d+)(\+?)\}$/;
const HEAD_BYTES = 256;
const utf8 = new TextDecoder('utf-8', { fatal: true });

type State =
  | { kind: 'line' }
  | { kind: 'literal'; size: number }
  /** Discarding the rest of a rejected command; `literal` bytes of an in-flight literal still to drop. */
  | { kind: 'skip'; tail: string; literal: number };

export class LiteralFramer {
  private buf: Buffer = Buffer.alloc(0);
  private scanned = 0;
  private state: State = { kind: 'line' };
  private parts: FramePart[] = [];
  private lineBytes = 0;
  private literalBytes = 0;

  constructor(private readonly options: FramerOptions) {}

  push(bytes: Buffer): void {
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([this.buf, bytes]);
  }

  /** Bytes received but not yet consumed (only meaningful between commands). */
  get buffered(): number { return this.buf.length; }

  /** Hand over unconsumed bytes and forget them (relay pending). */
  drain(): Buffer {
    const out = this.buf;
    this.reset();
    return out;
  }

  /** Drop everything buffered and any partial command (STARTTLS: RFC 9051 §6.2.1 / RFC 3207 §4.2 injection). */
  reset(): void {
    this.buf = Buffer.alloc(0);
    this.scanned = 0;
    this.state = { kind: 'line' };
    this.dropCommand();
  }

  /** Next complete command or event; null when more bytes are needed. */
  next(): FrameResult | null {
    for (;;) {
      const s = this.state;
      if (s.kind === 'skip') {
        if (!this.skip(s)) return null;
        continue;
      }
      if (s.kind === 'literal') {
        if (this.buf.length < s.size) return null;
        this.parts.push({ lit: this.buf.subarray(0, s.size) });
        this.consume(s.size);
        this.state = { kind: 'line' };
        continue;
      }
      const line = this.takeLine(this.options.maxLineBytes - this.lineBytes);
      if (line === null) return null;
      if (line === 'too-long') {
        const head = this.head();
        this.dropCommand();
        this.state = { kind: 'skip', tail: '', literal: 0 };
        return { type: 'error', error: 'LINE_TOO_LONG', head, fatal: false };
      }
      if (this.parts.length === 0 && line.length === 0) continue;
      this.lineBytes += line.length;
      this.parts.push({ seg: line });
      const m = LITERAL_TAIL_RE.exec(line.toString('latin1'));
      if (!m) {
        const parts = this.parts;
        this.dropCommand();
        return { type: 'command', parts };
      }
      const size = m[1]!.length > 10 ? Infinity : Number(m[1]);
      const sync = this.options.synchronising && m[2] !== '+';
      this.literalBytes += size;
      if (size > this.options.maxLiteralBytes || this.literalBytes > 2 * this.options.maxLiteralBytes) {
        const head = this.head();
        this.dropCommand();
        // RFC 9051 §7.5: no continuation means a client must not send a synchronising literal; any other is already on its way.
        return { type: 'error', error: 'LITERAL_TOO_LARGE', head, fatal: !sync };
      }
      this.state = { kind: 'literal', size };
      if (sync) return { type: 'continue' };
    }
  }

  /** Next raw line (SASL continuation, RFC 9051 §6.2.2); only valid between commands. */
  nextLine(): RawLineResult | null {
    if (this.state.kind === 'skip' && !this.skip(this.state)) return null;
    const line = this.takeLine(this.options.maxLineBytes);
    if (line === null) return null;
    if (line === 'too-long') {
      this.state = { kind: 'skip', tail: '', literal: 0 };
      this.skip(this.state);
      return { type: 'error', error: 'LINE_TOO_LONG' };
    }
    return { type: 'line', text: line.toString('latin1') };
  }

  private head(): Buffer {
    const first = this.parts[0];
    return first && 'seg' in first ? first.seg : this.buf.subarray(0, HEAD_BYTES);
  }

  private dropCommand(): void {
    this.parts = [];
    this.lineBytes = 0;
    this.literalBytes = 0;
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
    this.scanned = 0;
  }

  /** One line without its CRLF (bare LF tolerated), null if incomplete, 'too-long' past `max` bytes. */
  private takeLine(max: number): Buffer | null | 'too-long' {
    const at = this.buf.indexOf(LF, this.scanned);
    if (at < 0) {
      this.scanned = this.buf.length;
      return this.buf.length > max + 1 ? 'too-long' : null;
    }
    const end = at > 0 && this.buf[at - 1] === CR ? at - 1 : at;
    if (end > max) return 'too-long';
    const line = this.buf.subarray(0, end);
    this.consume(at + 1);
    return line;
  }

  /** Discard through the end of the rejected command, following in-flight literals (RFC 7888) so their bytes are never read as commands. */
  private skip(s: State & { kind: 'skip' }): boolean {
    for (;;) {
      if (s.literal > 0) {
        const n = Math.min(s.literal, this.buf.length);
        s.literal -= n;
        this.consume(n);
        if (s.literal > 0) return false;
      }
      const at = this.buf.indexOf(LF);
      if (at < 0) {
        s.tail = (s.tail + this.buf.toString('latin1')).slice(-24);
        this.consume(this.buf.length);
        return false;
      }
      const tail = (s.tail + this.buf.subarray(0, at).toString('latin1')).replace(/\r$/, '').slice(-24);
      this.consume(at + 1);
      const m = LITERAL_TAIL_RE.exec(tail);
      if (m && (m[2] === '+' || !this.options.synchronising)) {
        s.tail = '';
        s.literal = m[1]!.length > 15 ? Number.MAX_SAFE_INTEGER : Number(m[1]);
        continue;
      }
      this.state = { kind: 'line' };
      return true;
    }
  }
}

/** Base of a protocol's parser over the framer: the buffer operations pass through; the subclass adds its grammar. */
export abstract class FramedParser {
  protected readonly framer: LiteralFramer;

  constructor(options: FramerOptions) {
    this.framer = new LiteralFramer(options);
  }

  push(bytes: Buffer): void { this.framer.push(bytes); }

  /** Bytes received but not yet consumed (only meaningful between commands). */
  get buffered(): number { return this.framer.buffered; }

  /** Hand over unconsumed bytes and forget them (relay pending). */
  drain(): Buffer { return this.framer.drain(); }

  /** Drop everything buffered and any partial command (STARTTLS: nothing sent before the handshake is read after it). */
  reset(): void { this.framer.reset(); }
}

/**
 * The quoted string starting at `seg[start]` (a `"`), RFC 9051 §9 / RFC 5804 §4: only `\"` and `\\` escapes, no NUL, CR or
 * LF. Returns its UTF-8 value and the offset after the closing quote, or null when malformed.
 */
export function scanQuoted(seg: Buffer, start: number): { value: string; end: number } | null {
  const out: number[] = [];
  let i = start + 1;
  for (; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === 0x22) break;
    if (c === 0x5c) {
      const e = seg[++i];
      if (e !== 0x22 && e !== 0x5c) return null;
      out.push(e);
    } else if (c === 0 || c === CR || c === LF) {
      return null;
    } else {
      out.push(c);
    }
  }
  if (i >= seg.length) return null;
  const value = decodeUtf8(Buffer.from(out));
  return value === null ? null : { value, end: i + 1 };
}

/** A literal's payload as a string: strict UTF-8 and no NUL (literal8 is not accepted before login), else null. */
export function literalText(lit: Buffer): string | null {
  return lit.includes(0) ? null : decodeUtf8(lit);
}

export function decodeUtf8(bytes: Buffer): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}
