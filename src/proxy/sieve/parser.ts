// Owns the ManageSieve token grammar (RFC 5804 §4: atoms, quoted strings, {n+}/{n} literals) over the shared incremental framer, limits inside.
// Must not decide replies or know command semantics; bad input becomes a result value, never an exception.

import { FramedParser, LITERAL_TAIL_RE, literalText, scanQuoted, type FramePart } from '../literal-framer.js';

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

/** A subset of RFC 5804's ATOM-CHAR: enough for command names, mechanisms and XCLIENT's KEY=value (base64 FORWARD too). */
const ATOM_RE = /^[A-Za-z0-9_.:=+/-]+/;

/** ManageSieve's token grammar on top of the shared line + literal framer (`literal-framer.ts`); no literal waits for a continuation. */
export class SieveLineParser extends FramedParser {
  constructor(limits: SieveParserLimits) {
    super({ ...limits, synchronising: false });
  }

  next(): SieveParseResult | null {
    const r = this.framer.next();
    // A non-synchronising framer never asks for a continuation.
    if (r === null || r.type === 'continue') return null;
    if (r.type === 'error') return { type: 'error', error: r.error, fatal: r.fatal };
    const tokens = tokenize(r.parts);
    return tokens ? { type: 'line', tokens } : { type: 'error', error: 'SYNTAX', fatal: false };
  }
}

/** Tokens of one line: parts alternate between line segments (ending in a literal marker) and literal payloads. */
function tokenize(parts: FramePart[]): SieveToken[] | null {
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
        const q = scanQuoted(raw, pos);
        if (!q) return null;
        tokens.push({ type: 'string', value: q.value });
        pos = q.end;
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
      if (!('lit' in lit)) return null;
      const value = literalText(lit.lit);
      if (value === null) return null;
      tokens.push({ type: 'string', value });
      needSpace = true;
    }
  }
  return tokens;
}
