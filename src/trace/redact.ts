// Owns turning the bytes of a traced dialogue into printable lines with every credential removed: IMAP LOGIN and
// AUTHENTICATE, POP3 PASS, APOP and AUTH, SMTP AUTH (with their literals and SASL continuations).
// Must not log or keep more than one partial line; it sees one direction's bytes and the other's line starts.

export type TraceProtocol = 'imap' | 'pop3' | 'smtp' | 'sieve';

/** Longest line text kept in a trace record; the rest is counted. */
const MAX_LINE = 512;
/** A partial line longer than this is flushed as it is (a client that never sends CRLF). */
const MAX_PARTIAL = 8192;

/** Printable text: control bytes (and invalid UTF-8) shown as escapes, long lines cut with the count of the rest. */
export function printable(bytes: Buffer): string {
  let s = bytes.toString('utf8').replace(/[\x00-\x1f\x7f\ufffd]/g, (c) => (c === '\ufffd' ? '\\x??' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  if (s.length > MAX_LINE) s = `${s.slice(0, MAX_LINE)}…(+${s.length - MAX_LINE} chars)`;
  return s;
}

/** Split complete CRLF/LF lines off `buf`; returns them and the remainder. */
function splitLines(buf: Buffer): { lines: Buffer[]; rest: Buffer } {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, start)) {
    lines.push(buf.subarray(start, i > start && buf[i - 1] === 13 ? i - 1 : i));
    start = i + 1;
  }
  return { lines, rest: buf.subarray(start) };
}

/**
 * One traced conversation. `fromClient` is what the side that logs in sends (the client, or the proxy towards a
 * backend); `fromServer` what answers it. After a line that carries or announces a credential, every further line
 * from the client is redacted until the server's final answer to that command: IMAP its tagged reply; POP3 (`+OK`,
 * `-ERR`), SMTP (`NNN `, not 334) and ManageSieve (OK/NO/BYE) the first final reply after those owed to the commands
 * pipelined before it. Answers to earlier commands or untagged lines never end it.
 */
export class TraceRedactor {
  private secret = false;
  /** IMAP: the tag of the credential command whose tagged reply ends `secret`. */
  private secretTag: string | undefined;
  /** Untagged protocols: client commands not answered yet, and (while secret) final replies still owed to earlier ones. */
  private unanswered = 0;
  private ahead = 0;
  private partial: Buffer = Buffer.alloc(0);
  private serverPartial: Buffer = Buffer.alloc(0);

  constructor(private readonly protocol: TraceProtocol) {}

  fromClient(bytes: Buffer): string[] {
    const { lines, rest } = splitLines(Buffer.concat([this.partial, bytes]));
    this.partial = rest;
    if (this.partial.length > MAX_PARTIAL) { lines.push(this.partial); this.partial = Buffer.alloc(0); }
    return lines.map((l) => this.clientLine(l));
  }

  fromServer(bytes: Buffer): string[] {
    const { lines, rest } = splitLines(Buffer.concat([this.serverPartial, bytes]));
    this.serverPartial = rest.length > MAX_PARTIAL ? Buffer.alloc(0) : rest;
    for (const l of lines) this.serverLine(l.toString('latin1'));
    return lines.map((l) => printable(l));
  }

  /** The unfinished line of one side, as a (redacted) line: the end of what is logged. */
  flush(side: 'client' | 'server'): string[] {
    const part = side === 'client' ? this.partial : this.serverPartial;
    if (side === 'client') this.partial = Buffer.alloc(0); else this.serverPartial = Buffer.alloc(0);
    if (!part.length) return [];
    return [side === 'client' ? this.clientLine(part) : printable(part)];
  }

  /** A server line: does it end the credential exchange? (Continuations and untagged lines never do.) */
  private serverLine(text: string): void {
    if (this.protocol === 'imap') {
      if (this.secret && (text.startsWith(`${this.secretTag ?? ''} `) || /^\* BYE\b/i.test(text))) this.secret = false;
      return;
    }
    // ManageSieve (RFC 5804 §2.1) answers SASL steps with strings; only OK/NO/BYE are final. POP3 `+ ` continues.
    const final = this.protocol === 'smtp' ? /^\d{3}(?: |$)/.test(text) && !text.startsWith('334')
      : this.protocol === 'sieve' ? /^(OK|NO|BYE)\b/i.test(text) : /^(\+OK|-ERR)\b/i.test(text);
    if (!final) return;
    if (this.unanswered > 0) this.unanswered--;
    if (!this.secret) return;
    if (this.ahead > 0) this.ahead--; else this.secret = false;
  }

  private clientLine(line: Buffer): string {
    if (this.secret) return `[redacted ${line.length} bytes]`;
    const text = line.toString('utf8');
    const before = this.unanswered++;
    const r = this.protocol === 'imap' ? this.imap(text) : this.protocol === 'pop3' ? this.pop3(text) : this.protocol === 'sieve' ? this.sieve(text) : this.smtp(text);
    if (this.secret) this.ahead = before;
    return r ?? printable(line);
  }

  private imap(text: string): string | undefined {
    const m = /^(\S+) +(\S+)(?: +(.*))?$/.exec(text);
    if (!m) return undefined;
    const [, tag, cmd, args = ''] = m as unknown as [string, string, string, string | undefined];
    const c = cmd.toUpperCase();
    if (c === 'AUTHENTICATE') {
      this.secret = true;
      this.secretTag = tag;
      const [mech, ...initial] = args.split(/ +/);
      return `${printable(Buffer.from(`${tag} ${cmd} ${mech ?? ''}`))}${initial.length ? ' [redacted]' : ''}`;
    }
    if (c !== 'LOGIN') return undefined;
    // A literal announced at the end means the next bytes still belong to this command (user or password).
    if (/\{\d+\+?\}$/.test(args)) { this.secret = true; this.secretTag = tag; }
    const user = /^("(?:[^"\\]|\\.)*"|\{\d+\+?\}|[^\s"{]+)/.exec(args)?.[1];
    return `${printable(Buffer.from(`${tag} ${cmd}${user ? ` ${user}` : ''}`))} [redacted]`;
  }

  private pop3(text: string): string | undefined {
    const m = /^(\S+)(?: +(.*))?$/.exec(text);
    if (!m) return undefined;
    const c = (m[1] ?? '').toUpperCase();
    if (c === 'PASS') return 'PASS [redacted]';
    if (c === 'APOP') return `APOP ${printable(Buffer.from((m[2] ?? '').split(/ +/)[0] ?? ''))} [redacted]`;
    if (c === 'AUTH' && m[2]) return this.auth(m[1] ?? 'AUTH', m[2]);
    return undefined;
  }

  /** ManageSieve: AUTHENTICATE "MECH" ["initial response"], then strings or literals until OK/NO/BYE. */
  private sieve(text: string): string | undefined {
    const m = /^(AUTHENTICATE) +("[^"]*"|\S+)(?: +.*)?$/i.exec(text);
    if (!m) return undefined;
    this.secret = true;
    return `${m[1] ?? ''} ${printable(Buffer.from(m[2] ?? ''))} [redacted]`;
  }

  private smtp(text: string): string | undefined {
    const m = /^(\S+) +(.*)$/.exec(text);
    if (!m || (m[1] ?? '').toUpperCase() !== 'AUTH') return undefined;
    return this.auth(m[1] ?? 'AUTH', m[2] ?? '');
  }

  private auth(cmd: string, args: string): string {
    this.secret = true;
    const [mech, ...initial] = args.split(/ +/);
    return `${cmd} ${printable(Buffer.from(mech ?? ''))}${initial.length ? ' [redacted]' : ''}`;
  }
}
