// Owns parsing of SMTP/LMTP server replies (RFC 5321 §4.2): incremental, multi-line, with its own line limit.
// Must not do I/O or interpret reply meaning beyond code and text; the backend client decides what a code means.
import { ProxyError, sanitize } from '../../errors.js';

export interface BackendReply {
  /** Three-digit reply code. */
  code: number;
  /** Text of every line after "ddd-" / "ddd " (may be empty), in order. */
  lines: string[];
}

/** RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers stay well under this. */
export const MAX_REPLY_LINE_BYTES = 4096;
/** A multi-line reply longer than this many lines is not an SMTP server talking. */
export const MAX_REPLY_LINES = 200;

const LF = 0x0a;

/** Feed bytes as they arrive; complete replies come out. Throws ProxyError BACKEND_PROTOCOL on garbage. */
export class ReplyParser {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private pending: BackendReply | null = null;

  constructor(private readonly maxLineBytes = MAX_REPLY_LINE_BYTES) {}

  /** Bytes held that are not yet a complete reply (used to detect bytes smuggled before STARTTLS). */
  get buffered(): boolean {
    return this.partialBytes > 0 || this.pending !== null;
  }

  feed(chunk: Buffer): BackendReply[] {
    const out: BackendReply[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(LF, start);
      if (nl < 0) {
        const rest = chunk.subarray(start);
        if (rest.length > 0) {
          this.partialBytes += rest.length;
          if (this.partialBytes > this.maxLineBytes) throw new ProxyError('BACKEND_PROTOCOL', 'reply line too long');
          this.partial.push(rest);
        }
        return out;
      }
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.partialBytes + piece.length > this.maxLineBytes) throw new ProxyError('BACKEND_PROTOCOL', 'reply line too long');
      let line: Buffer = piece;
      if (this.partial.length > 0) {
        this.partial.push(piece);
        line = Buffer.concat(this.partial);
        this.partial = [];
        this.partialBytes = 0;
      }
      const reply = this.takeLine(line);
      if (reply) out.push(reply);
    }
  }

  private takeLine(raw: Buffer): BackendReply | null {
    // Tolerate a bare LF terminator; RFC 5321 §2.3.8 says CRLF, robustness says accept both.
    const end = raw.length > 0 && raw[raw.length - 1] === 0x0d ? raw.length - 1 : raw.length;
    return this.feedLine(raw.subarray(0, end).toString('latin1'));
  }

  /** One line without its line end (the backend-login runner splits lines itself); a complete reply or null. */
  feedLine(line: string): BackendReply | null {
    if (line.length > this.maxLineBytes) throw new ProxyError('BACKEND_PROTOCOL', 'reply line too long');
    const m = /^([2-5]\d\d)([ -]|$)(.*)$/s.exec(line);
    if (!m) throw new ProxyError('BACKEND_PROTOCOL', `malformed reply line: ${sanitize(line, 80)}`);
    const code = Number(m[1]);
    const more = m[2] === '-';
    const text = m[3] ?? '';
    if (this.pending && this.pending.code !== code) {
      // RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
      throw new ProxyError('BACKEND_PROTOCOL', `reply code changed inside a multi-line reply (${this.pending.code} then ${code})`);
    }
    const reply = this.pending ?? { code, lines: [] };
    reply.lines.push(text);
    if (reply.lines.length > MAX_REPLY_LINES) throw new ProxyError('BACKEND_PROTOCOL', 'multi-line reply too long');
    if (more) {
      this.pending = reply;
      return null;
    }
    this.pending = null;
    return reply;
  }
}

/** One line of text for a client or a log: the reply's lines joined, printable ASCII only, cut short. */
export function replyText(reply: BackendReply, max = 300): string {
  return sanitize(reply.lines.join(' ').trim(), max);
}

/** `250-` style lines → capability keywords upper-cased with their parameters (EHLO/LHLO reply, RFC 5321 §4.1.1.1). */
export function parseCapabilities(reply: BackendReply): Map<string, string[]> {
  const caps = new Map<string, string[]>();
  for (const line of reply.lines.slice(1)) {
    const words = line.trim().split(/\s+/).filter(Boolean);
    const [kw, ...params] = words;
    if (kw) caps.set(kw.toUpperCase(), params);
  }
  return caps;
}
