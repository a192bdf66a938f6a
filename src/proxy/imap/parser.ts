// Owns the IMAP command grammar (tag, name, atoms, quoted strings, literals, lists) over the shared incremental framer, limits inside.
// Must not decide replies, know command semantics or do I/O; bad input becomes a result value, never an exception.

import { FramedParser, LITERAL_TAIL_RE, literalText, scanQuoted, type FramePart, type RawLineResult } from '../literal-framer.js';

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

export type LineResult = RawLineResult;

export interface ParserLimits {
  maxLineBytes: number;
  maxLiteralBytes: number;
}

const MAX_LIST_DEPTH = 8;
/** RFC 9051 §9: tag = 1*<ASTRING-CHAR except "+">; atom = 1*ATOM-CHAR (7-bit, no atom-specials; `%`, `*` and `]` tolerated). */
const TAG_CHAR = /[^\x00-\x20\x7f-\xff(){%*"\\+]/;
const ATOM_CHAR = /[^\x00-\x20\x7f-\xff(){"\\]/;
const NAME_CHAR = /[A-Za-z0-9-]/;
const TAG_PREFIX_RE = /^([^\x00-\x20\x7f-\xff(){%*"\\+]+) /;

/** IMAP's grammar on top of the shared line + literal framer (`literal-framer.ts`). */
export class ImapCommandParser extends FramedParser {
  constructor(limits: ParserLimits) {
    super({ ...limits, synchronising: true });
  }

  /** Next complete command or event; null when more bytes are needed. */
  next(): ParseResult | null {
    const r = this.framer.next();
    if (r === null || r.type === 'continue') return r;
    if (r.type === 'error') return { type: 'error', error: r.error, tag: tagOf(r.head), fatal: r.fatal };
    const command = tokenize(r.parts);
    if (command) return { type: 'command', command };
    const first = r.parts[0];
    return { type: 'error', error: 'SYNTAX', tag: first && 'seg' in first ? tagOf(first.seg) : null, fatal: false };
  }

  /** Next raw line (SASL continuation, RFC 9051 §6.2.2); only valid between commands. */
  nextLine(): LineResult | null { return this.framer.nextLine(); }
}

function tagOf(line: Buffer): string | null {
  const m = TAG_PREFIX_RE.exec(line.subarray(0, 256).toString('latin1'));
  return m ? m[1]! : null;
}

/** Cursor over command parts: line segments (ending in a literal marker when followed by a literal) and literal payloads. */
class Cursor {
  private pi = 0;
  private pos = 0;
  constructor(private readonly parts: FramePart[]) {}

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
    const q = scanQuoted(this.seg!, this.pos);
    if (!q) return null;
    this.pos = q.end;
    return q.value;
  }
  /** `{n}` or `{n+}` ending this segment, followed by the literal part. */
  literal(): string | null {
    const s = this.seg!;
    const m = LITERAL_TAIL_RE.exec(s.subarray(this.pos).toString('latin1'));
    if (!m || m.index !== 0) return null;
    const lit = this.parts[this.pi + 1];
    if (!lit || !('lit' in lit)) return null;
    this.pi += 2;
    this.pos = 0;
    return literalText(lit.lit);
  }
}

function tokenize(parts: FramePart[]): ImapCommand | null {
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
