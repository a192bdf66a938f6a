// Owns incremental framing and tokenising of ManageSieve client lines (RFC 5804 §4: atoms, quoted strings, {n+}/{n} literals) with the line/literal limits inside.
// Must not decide replies or know command semantics; bad input becomes a result value, never an exception.

export type SieveToken =
  | { type: 'atom'; value: string }
  /** A quoted string or a literal, decoded as UTF-8. */
  | { type: 'string'; value: string };

export type SieveParseResult =
  | { type: 'line'; tokens: SieveToken[] }
  /** `fatal`: the rest of the stream cannot be trusted (an over-limit literal is already in flight). */
  | { type: 'error'; error: 'LINE_TOO_LONG' | 'LITERAL_TOO_LARGE' | 'SYNTAX'; fatal: boolean };

export interface SieveParserLimits {
  maxLineBytes: number;
  maxLiteralBytes: number;
}

const LF = 0x0a;
const CR = 0x0d;
/** RFC 5804 §4: literal-c2s = "{" number "+}" CRLF; "{n}" is tolerated as well (no continuation exists in ManageSieve). */
const LITERAL_TAIL_RE = /\{(\d{1,10})\+?\}$/;
const ATOM_RE = /^[A-Za-z0-9_.:-]+/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

type Part = { seg: Buffer } | { lit: Buffer };

export class SieveLineParser {
  private buf: Buffer = Buffer.alloc(0);
  private scanned = 0;
  private parts: Part[] = [];
  private lineBytes = 0;
  private literalBytes = 0;
  private literal: number | null = null;
  /** Dropping the rest of an over-long line. */
  private skipping = false;

  constructor(private readonly limits: SieveParserLimits) {}

  push(bytes: Buffer): void {
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([this.buf, bytes]);
  }

  get buffered(): number { return this.buf.length; }

  /** Hand over unconsumed bytes and forget them (relay pending). */
  drain(): Buffer {
    const out = this.buf;
    this.reset();
    return out;
  }

  /** Drop everything buffered (STARTTLS: nothing sent before the handshake may be read after it). */
  reset(): void {
    this.buf = Buffer.alloc(0);
    this.scanned = 0;
    this.parts = [];
    this.lineBytes = 0;
    this.literalBytes = 0;
    this.literal = null;
    this.skipping = false;
  }

  next(): SieveParseResult | null {
    for (;;) {
      if (this.skipping) {
        const at = this.buf.indexOf(LF);
        if (at < 0) { this.consume(this.buf.length); return null; }
        this.consume(at + 1);
        this.skipping = false;
        continue;
      }
      if (this.literal !== null) {
        if (this.buf.length < this.literal) return null;
        this.parts.push({ lit: this.buf.subarray(0, this.literal) });
        this.consume(this.literal);
        this.literal = null;
        continue;
      }
      const max = this.limits.maxLineBytes - this.lineBytes;
      const at = this.buf.indexOf(LF, this.scanned);
      if (at < 0) {
        this.scanned = this.buf.length;
        if (this.buf.length <= max + 1) return null;
        this.dropLine();
        this.skipping = true;
        return { type: 'error', error: 'LINE_TOO_LONG', fatal: false };
      }
      const end = at > 0 && this.buf[at - 1] === CR ? at - 1 : at;
      if (end > max) {
        this.consume(at + 1);
        this.dropLine();
        return { type: 'error', error: 'LINE_TOO_LONG', fatal: false };
      }
      const seg = this.buf.subarray(0, end);
      this.consume(at + 1);
      if (this.parts.length === 0 && seg.length === 0) continue;
      this.lineBytes += seg.length;
      this.parts.push({ seg });
      const m = LITERAL_TAIL_RE.exec(seg.toString('latin1'));
      if (!m) return this.finish();
      const size = Number(m[1]);
      this.literalBytes += size;
      if (size > this.limits.maxLiteralBytes || this.literalBytes > 2 * this.limits.maxLiteralBytes) {
        this.dropLine();
        // The literal's bytes are on their way and would be read as commands: the stream cannot be resynchronised.
        return { type: 'error', error: 'LITERAL_TOO_LARGE', fatal: true };
      }
      this.literal = size;
    }
  }

  private finish(): SieveParseResult {
    const parts = this.parts;
    this.dropLine();
    const tokens = tokenize(parts);
    return tokens ? { type: 'line', tokens } : { type: 'error', error: 'SYNTAX', fatal: false };
  }

  private dropLine(): void {
    this.parts = [];
    this.lineBytes = 0;
    this.literalBytes = 0;
    this.literal = null;
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
    this.scanned = 0;
  }
}

function decode(bytes: Buffer): string | null {
  try { return utf8.decode(bytes); } catch { return null; }
}

/** Tokens of one line: parts alternate between line segments (ending in a literal marker) and literal payloads. */
function tokenize(parts: Part[]): SieveToken[] | null {
  const tokens: SieveToken[] = [];
  /** The previous token ended right here: the next one needs a space first. */
  let needSpace = false;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (!('seg' in part)) return null;
    const hasLiteral = i + 1 < parts.length;
    const raw = hasLiteral ? part.seg.subarray(0, part.seg.toString('latin1').search(LITERAL_TAIL_RE)) : part.seg;
    const s = raw.toString('latin1');
    let pos = 0;
    while (pos < s.length) {
      if (s[pos] === ' ') {
        pos++;
        needSpace = false;
        continue;
      }
      if (needSpace) return null;
      if (s[pos] === '"') {
        const out: number[] = [];
        let j = pos + 1;
        for (; j < raw.length; j++) {
          const c = raw[j]!;
          if (c === 0x22) break;
          if (c === 0x5c) {
            const e = raw[++j];
            if (e !== 0x22 && e !== 0x5c) return null;
            out.push(e);
          } else if (c === 0 || c === CR || c === LF) {
            return null;
          } else {
            out.push(c);
          }
        }
        if (j >= raw.length) return null;
        const value = decode(Buffer.from(out));
        if (value === null) return null;
        tokens.push({ type: 'string', value });
        pos = j + 1;
      } else {
        const m = ATOM_RE.exec(s.slice(pos));
        if (!m) return null;
        tokens.push({ type: 'atom', value: m[0] });
        pos += m[0].length;
      }
      needSpace = true;
    }
    if (hasLiteral) {
      if (needSpace) return null;
      const lit = parts[++i]!;
      if (!('lit' in lit) || lit.lit.includes(0)) return null;
      const value = decode(lit.lit);
      if (value === null) return null;
      tokens.push({ type: 'string', value });
      needSpace = true;
    }
  }
  return tokens;
}
