// Owns incremental framing and tokenising of client IMAP commands (lines, quoted strings, {n}/{n+} literals) with the line/literal limits inside.
// Must not decide replies, know command semantics or do I/O; bad input becomes a result value, never an exception.

export type ImapArg =
  | { type: 'atom'; value: string }
  /** A quoted string or a literal, decoded as UTF-8. */
  | { type: 'string'; value: string }
  | { type: 'list'; items: ImapArg[] };

export interface ImapCommand {
  tag: string;
  /** Command name, upper-cased. */
  name: string;
  args: ImapArg[];
}

export type ParseErrorKind = 'LINE_TOO_LONG' | 'LITERAL_TOO_LARGE' | 'SYNTAX';

export type ParseResult =
  | { type: 'command'; command: ImapCommand }
  /** A synchronising literal was accepted: the server must send a `+` continuation before the client sends it (RFC 9051 §7.5). */
  | { type: 'continue' }
  /** `tag` is null when no valid tag could be read. `fatal`: the connection cannot be resynchronised (RFC 7888 §4 over-limit non-synchronising literal). */
  | { type: 'error'; error: ParseErrorKind; tag: string | null; fatal: boolean };

export type LineResult = { type: 'line'; text: string } | { type: 'error'; error: 'LINE_TOO_LONG' };

export interface ParserLimits {
  maxLineBytes: number;
  maxLiteralBytes: number;
}

const LF = 0x0a;
const CR = 0x0d;
const MAX_LIST_DEPTH = 8;
/** RFC 9051 §9: tag = 1*<ASTRING-CHAR except "+">; atom = 1*ATOM-CHAR (7-bit, no atom-specials; `%`, `*` and `]` tolerated). */
const TAG_CHAR = /[^\x00-\x20\x7f-\xff(){%*"\\+]/;
const ATOM_CHAR = /[^\x00-\x20\x7f-\xff(){"\\]/;
const NAME_CHAR = /[A-Za-z0-9-]/;
const TAG_PREFIX_RE = /^([^\x00-\x20\x7f-\xff(){%*"\\+]+) /;
const LITERAL_TAIL_RE = /\{(\d+)(\+?)\}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

type Part = { seg: Buffer } | { lit: Buffer };
type State =
  | { kind: 'line' }
  | { kind: 'literal'; size: number }
  /** Discarding the rest of a rejected command; `literal` bytes of a non-synchronising literal still to drop. */
  | { kind: 'skip'; tail: string; literal: number };

export class ImapCommandParser {
  private buf: Buffer = Buffer.alloc(0);
  private scanned = 0;
  private state: State = { kind: 'line' };
  private parts: Part[] = [];
  private lineBytes = 0;
  private literalBytes = 0;
  private tag: string | null = null;

  constructor(private readonly limits: ParserLimits) {}

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
  next(): ParseResult | null {
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
      const line = this.takeLine(this.limits.maxLineBytes - this.lineBytes);
      if (line === null) return null;
      if (line === 'too-long') return this.fail('LINE_TOO_LONG', this.tag ?? tagOf(this.buf), true);
      if (this.parts.length === 0) {
        if (line.length === 0) continue;
        this.tag = tagOf(line);
      }
      this.lineBytes += line.length;
      this.parts.push({ seg: line });
      const m = LITERAL_TAIL_RE.exec(line.toString('latin1'));
      if (!m) return this.finish();
      const size = m[1]!.length > 10 ? Infinity : Number(m[1]);
      const sync = m[2] !== '+';
      this.literalBytes += size;
      if (size > this.limits.maxLiteralBytes || this.literalBytes > 2 * this.limits.maxLiteralBytes) {
        const tag = this.tag;
        this.dropCommand();
        // RFC 9051 §7.5: no "+" means a client must not send a synchronising literal; a non-synchronising one is already on its way.
        return { type: 'error', error: 'LITERAL_TOO_LARGE', tag, fatal: !sync };
      }
      this.state = { kind: 'literal', size };
      if (sync) return { type: 'continue' };
    }
  }

  /** Next raw line (SASL continuation, RFC 9051 §6.2.2); only valid between commands. */
  nextLine(): LineResult | null {
    if (this.state.kind === 'skip' && !this.skip(this.state)) return null;
    const line = this.takeLine(this.limits.maxLineBytes);
    if (line === null) return null;
    if (line === 'too-long') {
      this.state = { kind: 'skip', tail: '', literal: 0 };
      this.skip(this.state);
      return { type: 'error', error: 'LINE_TOO_LONG' };
    }
    return { type: 'line', text: line.toString('latin1') };
  }

  private fail(error: ParseErrorKind, tag: string | null, skipRest: boolean): ParseResult {
    this.dropCommand();
    if (skipRest) this.state = { kind: 'skip', tail: '', literal: 0 };
    return { type: 'error', error, tag, fatal: false };
  }

  private finish(): ParseResult {
    const parts = this.parts;
    const tag = this.tag;
    this.dropCommand();
    const command = tokenize(parts);
    return command ? { type: 'command', command } : { type: 'error', error: 'SYNTAX', tag, fatal: false };
  }

  private dropCommand(): void {
    this.parts = [];
    this.lineBytes = 0;
    this.literalBytes = 0;
    this.tag = null;
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

  /** Discard through the end of the rejected command, following non-synchronising literals (RFC 7888) so their bytes are never read as commands. */
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
      if (m && m[2] === '+') {
        s.tail = '';
        s.literal = m[1]!.length > 15 ? Number.MAX_SAFE_INTEGER : Number(m[1]);
        continue;
      }
      this.state = { kind: 'line' };
      return true;
    }
  }
}

function tagOf(line: Buffer): string | null {
  const m = TAG_PREFIX_RE.exec(line.subarray(0, 256).toString('latin1'));
  return m ? m[1]! : null;
}

/** Cursor over command parts: line segments (ending in a literal marker when followed by a literal) and literal payloads. */
class Cursor {
  private pi = 0;
  private pos = 0;
  constructor(private readonly parts: Part[]) {}

  private get seg(): Buffer | null {
    const p = this.parts[this.pi];
    return p && 'seg' in p ? p.seg : null;
  }
  peek(): number {
    const s = this.seg;
    return s && this.pos < s.length ? s[this.pos]! : -1;
  }
  atEnd(): boolean {
    return this.pi >= this.parts.length - 1 && this.peek() === -1;
  }
  advance(): void { this.pos++; }
  spaces(): number {
    let n = 0;
    while (this.peek() === 0x20) { this.pos++; n++; }
    return n;
  }
  take(re: RegExp): string | null {
    const s = this.seg;
    if (!s) return null;
    let end = this.pos;
    while (end < s.length && re.test(String.fromCharCode(s[end]!))) end++;
    if (end === this.pos) return null;
    const out = s.subarray(this.pos, end).toString('latin1');
    this.pos = end;
    return out;
  }
  quoted(): string | null {
    const s = this.seg!;
    const out: number[] = [];
    let i = this.pos + 1;
    for (; i < s.length; i++) {
      const c = s[i]!;
      if (c === 0x22) break;
      if (c === 0x5c) {
        const e = s[++i];
        if (e !== 0x22 && e !== 0x5c) return null;
        out.push(e);
      } else if (c === 0 || c === CR || c === LF) {
        return null;
      } else {
        out.push(c);
      }
    }
    if (i >= s.length) return null;
    this.pos = i + 1;
    return decode(Buffer.from(out));
  }
  /** `{n}` or `{n+}` ending this segment, followed by the literal part. */
  literal(): string | null {
    const s = this.seg!;
    const m = LITERAL_TAIL_RE.exec(s.subarray(this.pos).toString('latin1'));
    if (!m || m.index !== 0) return null;
    const lit = this.parts[this.pi + 1];
    if (!lit || !('lit' in lit) || lit.lit.includes(0)) return null;
    this.pi += 2;
    this.pos = 0;
    return decode(lit.lit);
  }
}

function decode(bytes: Buffer): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

function tokenize(parts: Part[]): ImapCommand | null {
  const c = new Cursor(parts);
  const tag = c.take(TAG_CHAR);
  if (!tag || c.spaces() === 0) return null;
  const name = c.take(NAME_CHAR);
  if (!name) return null;
  const args: ImapArg[] = [];
  for (;;) {
    const sp = c.spaces();
    if (c.atEnd()) break;
    if (sp === 0) return null;
    const arg = parseArg(c, 0);
    if (!arg) return null;
    args.push(arg);
  }
  return { tag, name: name.toUpperCase(), args };
}

function parseArg(c: Cursor, depth: number): ImapArg | null {
  const ch = c.peek();
  if (ch === 0x22) {
    const value = c.quoted();
    return value === null ? null : { type: 'string', value };
  }
  if (ch === 0x7b) {
    const value = c.literal();
    return value === null ? null : { type: 'string', value };
  }
  if (ch === 0x28) {
    if (depth >= MAX_LIST_DEPTH) return null;
    c.advance();
    const items: ImapArg[] = [];
    for (;;) {
      c.spaces();
      if (c.peek() === 0x29) {
        c.advance();
        return { type: 'list', items };
      }
      if (c.atEnd()) return null;
      const item = parseArg(c, depth + 1);
      if (!item) return null;
      items.push(item);
    }
  }
  const value = c.take(ATOM_CHAR);
  return value === null ? null : { type: 'atom', value };
}
