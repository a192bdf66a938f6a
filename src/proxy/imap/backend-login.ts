// Owns the proxy's login to an IMAP backend: greeting, CAPABILITY, STARTTLS, ID with the client address, LOGIN with literals.
// Must not do I/O, retry, judge health or pass backend text to clients (it goes into ProxyError details for logs only).
import { ProxyError } from '../../errors.js';
import type { BackendAction, BackendEvent, BackendLogin, BackendLoginContext } from '../protocol.js';
import { CRLF, quoteAscii } from './replies.js';
import { plainAddress } from '../../core/proxy-header.js';
import { TOKEN_ERROR_ACK, encodeTokenResponse } from '../sasl.js';

/** RFC 7888 §3: LITERAL- allows non-synchronising literals up to this size. */
const LITERAL_MINUS_MAX = 4096;
/** RFC 2971 §3.3: at most 30 field/value pairs. */
const ID_MAX_PAIRS = 30;

type Purpose = 'capability' | 'starttls' | 'id' | 'login';
type Phase = 'greeting' | 'capability' | 'starttls' | 'tls-wait' | 'login' | 'done';
/** A piece of the LOGIN command; `sync` pieces wait for the backend's "+" first (RFC 9051 §7.5). */
interface Piece { bytes: Buffer; sync: boolean }

export function createImapBackendLogin(ctx: BackendLoginContext): BackendLogin {
  return new ImapBackendLogin(ctx);
}

class ImapBackendLogin implements BackendLogin {
  private phase: Phase = 'greeting';
  private caps: ReadonlySet<string> | null = null;
  private tlsDone = false;
  private tagCount = 0;
  private readonly tags = new Map<string, Purpose>();
  private pieces: Piece[] = [];
  /** Token login: continuations answered so far (initial response without SASL-IR, then an error challenge). */
  private tokenContinuations = 0;
  private out: BackendAction[] = [];

  constructor(private readonly ctx: BackendLoginContext) {}

  step(event: BackendEvent): BackendAction[] {
    if (this.phase === 'done') return [];
    if (event.kind === 'line') {
      this.onLine(event.line);
    } else if (this.phase !== 'tls-wait') {
      this.fail('BACKEND_PROTOCOL', 'unexpected tls-ready');
    } else {
      // RFC 9051 §6.2.1: capabilities learnt before TLS must be discarded.
      this.tlsDone = true;
      this.caps = null;
      this.proceed();
    }
    return this.flush();
  }

  private flush(): BackendAction[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  private fail(code: 'BACKEND_PROTOCOL' | 'BACKEND_UNAVAILABLE' | 'BACKEND_USER_BUSY' | 'BACKEND_AUTH_FAILED' | 'AUTH_FAILED', detail: string): void {
    this.phase = 'done';
    this.out.push({ kind: 'fail', error: new ProxyError(code, detail) });
  }

  private command(purpose: Purpose, text: string): string {
    const tag = `mp${++this.tagCount}`;
    this.tags.set(tag, purpose);
    return `${tag} ${text}`;
  }

  private onLine(line: string): void {
    if (this.phase === 'greeting') return this.onGreeting(line);
    if (this.phase === 'tls-wait') return this.fail('BACKEND_PROTOCOL', 'data before TLS handshake');
    if (line.startsWith('+')) return this.onContinuation();
    if (line.startsWith('* ')) return this.onUntagged(line);
    const sp = line.indexOf(' ');
    const tag = sp > 0 ? line.slice(0, sp) : line;
    const purpose = this.tags.get(tag);
    if (!purpose) return this.fail('BACKEND_PROTOCOL', `unexpected line: ${line}`);
    this.tags.delete(tag);
    const text = line.slice(sp + 1);
    this.learnCaps(text);
    const status = /^(OK|NO|BAD)\b/i.exec(text)?.[1]?.toUpperCase() ?? '';
    this.onTagged(purpose, status, text);
  }

  private onGreeting(line: string): void {
    // RFC 9051 §7.1: the greeting is OK (proceed), PREAUTH (no login possible for a user) or BYE (refused).
    if (/^\* OK\b/i.test(line)) {
      this.learnCaps(line);
      return this.proceed();
    }
    if (/^\* BYE\b/i.test(line)) return this.fail('BACKEND_UNAVAILABLE', `greeting: ${line}`);
    this.fail('BACKEND_PROTOCOL', `greeting: ${line}`);
  }

  private onUntagged(line: string): void {
    if (/^\* BYE\b/i.test(line)) return this.fail('BACKEND_UNAVAILABLE', line);
    const m = /^\* CAPABILITY (.*)$/i.exec(line);
    if (m) this.caps = parseCaps(m[1]!);
    else this.learnCaps(line);
  }

  private onContinuation(): void {
    if (this.ctx.token && this.phase === 'login') return this.onTokenContinuation();
    const next = this.pieces[0];
    if (this.phase !== 'login' || !next?.sync) return this.fail('BACKEND_PROTOCOL', 'unexpected continuation');
    next.sync = false;
    this.sendPieces('');
  }

  private onTagged(purpose: Purpose, status: string, text: string): void {
    switch (purpose) {
      case 'id':
        return; // Informational; a backend that does not trust us may refuse it.
      case 'capability':
        if (status !== 'OK') return this.fail('BACKEND_PROTOCOL', `CAPABILITY: ${text}`);
        if (!this.caps) this.caps = new Set();
        return this.proceed();
      case 'starttls':
        if (status !== 'OK') return this.fail('BACKEND_PROTOCOL', `STARTTLS: ${text}`);
        this.phase = 'tls-wait';
        this.out.push({ kind: 'start-tls' });
        return;
      case 'login':
        if (status === 'OK') {
          this.phase = 'done';
          this.out.push({ kind: 'done', text });
          return;
        }
        // RFC 5530 §3: UNAVAILABLE/SERVERBUG are temporary backend conditions, not a verdict on the credentials;
        // LIMIT/INUSE concern this user only (too many sessions, mailbox locked): the backend itself is fine.
        if (status === 'NO' && /^NO \[(UNAVAILABLE|SERVERBUG)\]/i.test(text)) return this.fail('BACKEND_UNAVAILABLE', `LOGIN: ${text}`);
        if (status === 'NO' && /^NO \[(LIMIT|INUSE)\]/i.test(text)) return this.fail('BACKEND_USER_BUSY', `LOGIN: ${text}`);
        if (status === 'NO') return this.fail('BACKEND_AUTH_FAILED', `LOGIN: ${text}`);
        return this.fail('BACKEND_PROTOCOL', `LOGIN: ${text}`);
    }
  }

  private learnCaps(text: string): void {
    const m = /\[CAPABILITY ([^\]]*)\]/i.exec(text);
    if (m) this.caps = parseCaps(m[1]!);
  }

  /** Next step after the greeting, a CAPABILITY reply or the TLS handshake. */
  private proceed(): void {
    if (this.ctx.route.tls === 'starttls' && !this.tlsDone) {
      this.phase = 'starttls';
      this.out.push({ kind: 'send', bytes: this.command('starttls', 'STARTTLS') + CRLF });
      return;
    }
    if (!this.caps) {
      this.phase = 'capability';
      this.out.push({ kind: 'send', bytes: this.command('capability', 'CAPABILITY') + CRLF });
      return;
    }
    if (this.caps.has('LOGINDISABLED')) return this.fail('BACKEND_PROTOCOL', 'backend advertises LOGINDISABLED (TLS towards it not configured?)');
    const { user, password } = this.ctx;
    if (user.includes('\0') || password.includes('\0')) return this.fail('AUTH_FAILED', 'credentials contain NUL');
    this.phase = 'login';
    // RFC 9051 §5.5: ID and LOGIN are pipelined; the backend processes them in order, so the ID lands before the login.
    const id = this.ctx.forwardClient && this.caps.has('ID') ? this.command('id', `ID ${this.idList()}`) + CRLF : '';
    if (this.ctx.token) return this.tokenLogin(id);
    const u = Buffer.from(user, 'utf8');
    const p = Buffer.from(password, 'utf8');
    const uSync = !this.nonSync(u.length);
    const pSync = !this.nonSync(p.length);
    const head = `${this.command('login', 'LOGIN')} {${u.length}${uSync ? '' : '+'}}${CRLF}`;
    this.pieces = [
      { bytes: Buffer.concat([u, Buffer.from(` {${p.length}${pSync ? '' : '+'}}${CRLF}`)]), sync: uSync },
      { bytes: Buffer.concat([p, Buffer.from(CRLF)]), sync: pSync },
    ];
    this.sendPieces(id + head);
  }

  /** AUTHENTICATE with the client's mechanism and token (Dovecot oauth2 passdb); RFC 4959 SASL-IR when offered. */
  private tokenLogin(id: string): void {
    const { mechanism } = this.ctx.token!;
    if (!this.caps!.has(`AUTH=${mechanism}`)) return this.fail('BACKEND_PROTOCOL', `backend does not offer AUTH=${mechanism}`);
    const ir = this.caps!.has('SASL-IR') ? ` ${this.tokenResponse()}` : '';
    this.out.push({ kind: 'send', bytes: `${id}${this.command('login', `AUTHENTICATE ${mechanism}`)}${ir}${CRLF}` });
    if (ir) this.tokenContinuations = 1;
  }

  private tokenResponse(): string {
    return encodeTokenResponse(this.ctx.token!.mechanism, this.ctx.user, this.ctx.token!.token);
  }

  /** First "+" (no SASL-IR): the initial response; next: RFC 7628 §3.2.3 acknowledgement of the error challenge. */
  private onTokenContinuation(): void {
    const n = this.tokenContinuations++;
    if (n === 0) return void this.out.push({ kind: 'send', bytes: `${this.tokenResponse()}${CRLF}` });
    if (n === 1) return void this.out.push({ kind: 'send', bytes: `${this.ctx.token!.mechanism === 'OAUTHBEARER' ? TOKEN_ERROR_ACK : ''}${CRLF}` });
    this.fail('BACKEND_PROTOCOL', 'too many SASL continuations');
  }

  /** Send `prefix` and every queued piece up to the next one that must wait for "+". */
  private sendPieces(prefix: string): void {
    const chunks: Buffer[] = prefix ? [Buffer.from(prefix)] : [];
    while (this.pieces.length && !this.pieces[0]!.sync) chunks.push(this.pieces.shift()!.bytes);
    if (chunks.length) this.out.push({ kind: 'send', bytes: Buffer.concat(chunks) });
  }

  private nonSync(size: number): boolean {
    const caps = this.caps!;
    return caps.has('LITERAL+') || (caps.has('LITERAL-') && size <= LITERAL_MINUS_MAX);
  }

  /**
   * Dovecot's trusted-proxy ID fields first, then the client's own (never its `x-` fields, which could spoof ours).
   * Built as one string (ports and the hop count are numbers: nothing to quote).
   */
  private idList(): string {
    const { client, sessionId, clientId, proxyTtl } = this.ctx;
    let out = `("x-originating-ip" ${quoteAscii(plainAddress(client.address))} "x-originating-port" "${client.port}" "x-connected-ip" ${quoteAscii(plainAddress(client.localAddress))} "x-connected-port" "${client.localPort}" "x-session-id" ${quoteAscii(sessionId)}`;
    let pairs = 5;
    // Dovecot's hop count (login proxy TTL): the next proxy refuses when it reaches the end instead of looping on.
    if (proxyTtl !== undefined) { out += ` "x-proxy-ttl" "${proxyTtl}"`; pairs++; }
    if (clientId) {
      for (const k of Object.keys(clientId)) {
        if (pairs >= ID_MAX_PAIRS) break;
        if (/^x-/i.test(k)) continue;
        out += ` ${quoteAscii(k)} ${quoteAscii(clientId[k]!)}`;
        pairs++;
      }
    }
    return `${out})`;
  }
}

/** Capability lists seen (a backend sends the same one to every login); the sets are only read, so they are shared. */
const capsSeen = new Map<string, ReadonlySet<string>>();
const CAPS_MEMO_MAX = 256;

function parseCaps(text: string): ReadonlySet<string> {
  let caps = capsSeen.get(text);
  if (caps === undefined) {
    if (capsSeen.size >= CAPS_MEMO_MAX) capsSeen.clear();
    caps = new Set(text.trim().split(/\s+/).filter(Boolean).map((c) => c.toUpperCase()));
    capsSeen.set(text, caps);
  }
  return caps;
}

