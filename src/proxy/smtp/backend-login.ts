// Owns the SMTP/LMTP backend login sequence as a sans-I/O BackendLogin: greeting, EHLO/LHLO, STARTTLS (RFC 3207), XCLIENT (Postfix XCLIENT_README), AUTH PLAIN (RFC 4954/4616).
// Must not do I/O or pass backend text to clients; the backend-session runner moves the bytes, backend replies become done/fail actions.
import { ProxyError } from '../../errors.js';
import type { Route } from '../../directory/backends.js';
import type { ClientEndpoint } from '../../core/types.js';
import { plainAddress } from '../../core/proxy-header.js';
import type { BackendAction, BackendEvent, BackendLogin } from '../protocol.js';
import { TOKEN_ERROR_ACK, encodePlain, encodeTokenResponse } from '../sasl.js';
import type { TokenMechanism } from '../../core/types.js';
import { ReplyParser, parseCapabilities, replyText, type BackendReply } from './reply-parser.js';

export interface SmtpBackendLoginContext {
  route: Route;
  /** Name this proxy gives in EHLO/LHLO. */
  heloName: string;
  client: ClientEndpoint;
  /** Our connection id, passed as XCLIENT SESSION where offered (Dovecot logs it: one id across both logs). */
  sessionId: string;
  /** Hops left for loop protection, passed as XCLIENT TTL where offered (Dovecot's proxy TTL); see loop-guard.ts. */
  proxyTtl?: number | undefined;
  /** XCLIENT attributes besides ADDR/PORT/SESSION; sent only when the route trusts the proxy (native forwarding). */
  xclient?: { HELO?: string | undefined; NAME?: string | undefined; PROTO?: string | undefined; LOGIN?: string | undefined };
  /** AUTH PLAIN as this user when the backend still offers AUTH after XCLIENT (submission); with `token`, AUTH with that mechanism and bearer token instead. */
  credentials?: { user: string; password: string; token?: { mechanism: TokenMechanism; token: string } | undefined };
}

/** RFC 3461 §4 xtext, as XCLIENT values need (RFC-less Postfix XCLIENT_README uses it too). */
export function xtext(value: string): string {
  return value.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** XCLIENT ADDR form (Postfix XCLIENT_README): IPv6 addresses get the "IPV6:" prefix. */
function xclientAddr(address: string): string {
  const bare = plainAddress(address);
  return bare.includes(':') ? `IPV6:${bare}` : bare;
}

/** RFC 5321 §4.5.3.1.4 / RFC 4954 §4: the longest command line, CRLF included. */
const MAX_AUTH_LINE = 512;

type Phase = 'greeting' | 'hello' | 'starttls' | 'tls-wait' | 'xclient' | 'auth' | 'done';

/** Drives one backend SMTP/LMTP session to "ready for MAIL". After `done`, `capabilities` holds the last EHLO/LHLO answer. */
export class SmtpBackendLogin implements BackendLogin {
  capabilities = new Map<string, string[]>();
  /** A token login's error challenge was answered once. */
  private tokenAcked = false;
  /** The initial response held back for the server's empty 334 (see auth()). */
  private response: string | undefined;
  /** Things worth a debug log line (XCLIENT wanted but not offered). */
  readonly notes: string[] = [];
  greeting = '';
  private phase: Phase = 'greeting';
  private readonly parser = new ReplyParser();
  private tlsDone = false;
  private xclientDone = false;
  readonly lmtp: boolean;

  constructor(private readonly ctx: SmtpBackendLoginContext) {
    this.lmtp = ctx.route.protocol === 'lmtp';
  }

  has(capability: string): boolean {
    return this.capabilities.has(capability.toUpperCase());
  }

  step(event: BackendEvent): BackendAction[] {
    if (this.phase === 'done') return [];
    if (event.kind === 'tls-ready') {
      if (this.phase !== 'tls-wait') return this.fail('BACKEND_PROTOCOL', 'unexpected tls-ready');
      this.tlsDone = true;
      return this.hello();
    }
    const reply = this.parser.feedLine(event.line);
    return reply ? this.onReply(reply) : [];
  }

  private onReply(r: BackendReply): BackendAction[] {
    const text = replyText(r, 120);
    switch (this.phase) {
      case 'greeting':
        this.greeting = text;
        if (r.code !== 220) return this.fail('BACKEND_UNAVAILABLE', `greeting ${r.code} ${text}`);
        return this.hello();
      case 'hello': {
        const verb = this.lmtp ? 'LHLO' : 'EHLO';
        if (r.code !== 250) return this.fail('BACKEND_PROTOCOL', `${verb} answered ${r.code} ${text}`);
        this.capabilities = parseCapabilities(r);
        return this.afterHello();
      }
      case 'starttls':
        if (r.code !== 220) return this.fail('BACKEND_UNAVAILABLE', `STARTTLS answered ${r.code} ${text}`);
        this.phase = 'tls-wait';
        this.capabilities = new Map();
        return [{ kind: 'start-tls' }];
      case 'tls-wait':
        // RFC 3207 §4.2: nothing may follow the 220 before the handshake.
        return this.fail('BACKEND_PROTOCOL', 'data after STARTTLS reply');
      case 'xclient':
        if (r.code !== 220 && r.code !== 250) return this.fail('BACKEND_PROTOCOL', `XCLIENT answered ${r.code} ${text}`);
        // XCLIENT_README: the server answers like a new connection; say EHLO/LHLO again.
        return this.hello();
      case 'auth':
        if (r.code === 235) return this.done();
        if (r.code === 334 && this.response !== undefined) {
          const bytes = `${this.response}\r\n`;
          this.response = undefined;
          return [{ kind: 'send', bytes }];
        }
        // RFC 7628 §3.2.3: a 334 with a token carries the JSON error; acknowledge it (XOAUTH2: empty line), the failure follows.
        if (r.code === 334 && this.ctx.credentials?.token && !this.tokenAcked) {
          this.tokenAcked = true;
          return [{ kind: 'send', bytes: `${this.ctx.credentials.token.mechanism === 'OAUTHBEARER' ? TOKEN_ERROR_ACK : ''}\r\n` }];
        }
        if (r.code === 535 || r.code === 534 || r.code === 538) return this.fail('BACKEND_AUTH_FAILED', `AUTH answered ${r.code} ${text}`);
        return this.fail(r.code === 454 || r.code >= 500 ? 'BACKEND_UNAVAILABLE' : 'BACKEND_PROTOCOL', `AUTH answered ${r.code} ${text}`);
      case 'done':
        return [];
    }
  }

  /**
   * RFC 4954 §4: an initial response that would take the AUTH line past 512 octets goes after the server's empty 334
   * instead (Dovecot's submission refuses AUTH lines over about 1 KB with 500, i.e. every access token of common size).
   */
  private auth(mechanism: string, response: string): BackendAction[] {
    this.phase = 'auth';
    const line = `AUTH ${mechanism} ${response}\r\n`;
    if (line.length <= MAX_AUTH_LINE) return [{ kind: 'send', bytes: line }];
    this.response = response;
    return [{ kind: 'send', bytes: `AUTH ${mechanism}\r\n` }];
  }

  private hello(): BackendAction[] {
    this.phase = 'hello';
    return [{ kind: 'send', bytes: `${this.lmtp ? 'LHLO' : 'EHLO'} ${this.ctx.heloName}\r\n` }];
  }

  /** After each EHLO/LHLO: STARTTLS first, then XCLIENT, then AUTH, each at most once. */
  private afterHello(): BackendAction[] {
    const { route } = this.ctx;
    if (route.tls === 'starttls' && !this.tlsDone) {
      if (!this.has('STARTTLS')) return this.fail('BACKEND_PROTOCOL', 'backend does not offer STARTTLS');
      this.phase = 'starttls';
      return [{ kind: 'send', bytes: 'STARTTLS\r\n' }];
    }
    if (route.trustsProxy && route.forwardClientAddress === 'native' && !this.xclientDone) {
      this.xclientDone = true;
      if (this.has('XCLIENT')) {
        const line = this.xclientLine();
        if (line) {
          this.phase = 'xclient';
          return [{ kind: 'send', bytes: `${line}\r\n` }];
        }
      } else {
        this.notes.push('backend trusts the proxy but does not offer XCLIENT; client address not forwarded');
      }
    }
    const creds = this.ctx.credentials;
    if (creds && this.has('AUTH')) {
      const mechs = (this.capabilities.get('AUTH') ?? []).map((m) => m.toUpperCase());
      const token = creds.token;
      if (token) {
        if (!mechs.includes(token.mechanism)) return this.fail('BACKEND_PROTOCOL', `backend offers no AUTH ${token.mechanism} (${mechs.join(' ')})`);
        return this.auth(token.mechanism, encodeTokenResponse(token.mechanism, creds.user, token.token));
      }
      if (!mechs.includes('PLAIN')) return this.fail('BACKEND_PROTOCOL', `backend offers no AUTH PLAIN (${mechs.join(' ')})`);
      return this.auth('PLAIN', encodePlain(creds.user, creds.password));
    }
    return this.done();
  }

  /** Only attributes the backend advertised are sent; null when none is. */
  private xclientLine(): string | null {
    const { client, sessionId, xclient } = this.ctx;
    const ttl = this.ctx.proxyTtl;
    const attrs: Record<string, string | undefined> = { ADDR: xclientAddr(client.address), PORT: String(client.port), SESSION: sessionId, ...(ttl !== undefined ? { TTL: String(ttl) } : {}), ...xclient };
    const offered = new Set((this.capabilities.get('XCLIENT') ?? []).map((a) => a.toUpperCase()));
    const parts = Object.entries(attrs)
      .filter((e): e is [string, string] => e[1] !== undefined && offered.has(e[0]))
      .map(([k, v]) => `${k}=${xtext(v)}`);
    return parts.length ? `XCLIENT ${parts.join(' ')}` : null;
  }

  private done(): BackendAction[] {
    this.phase = 'done';
    return [{ kind: 'done', text: this.greeting }];
  }

  private fail(code: 'BACKEND_UNAVAILABLE' | 'BACKEND_PROTOCOL' | 'BACKEND_AUTH_FAILED', detail: string): BackendAction[] {
    this.phase = 'done';
    return [{ kind: 'fail', error: new ProxyError(code, detail) }];
  }
}
