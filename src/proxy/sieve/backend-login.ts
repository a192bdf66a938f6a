// Owns the proxy's login to a ManageSieve backend (RFC 5804): capability greeting, STARTTLS, Dovecot XCLIENT with the client address, AUTHENTICATE with an initial response.
// Must not do I/O, retry or judge health; backend text goes into ProxyError details for logs only, never to clients.
import { ProxyError } from '../../errors.js';
import type { BackendAction, BackendEvent, BackendLogin, BackendLoginContext } from '../protocol.js';
import { plainAddress } from '../../core/proxy-header.js';
import { TOKEN_ERROR_ACK, encodePlain, encodeTokenResponse } from '../sasl.js';
import { CRLF, quote } from './replies.js';

type Phase = 'greeting' | 'starttls' | 'tls-wait' | 'xclient' | 'auth' | 'auth-error' | 'done';
type FailCode = 'BACKEND_PROTOCOL' | 'BACKEND_UNAVAILABLE' | 'BACKEND_AUTH_FAILED' | 'BACKEND_USER_BUSY';

/** Capability lines a backend may send before its OK, at most. */
const MAX_CAPABILITY_LINES = 64;

export function createSieveBackendLogin(ctx: BackendLoginContext): BackendLogin {
  return new SieveBackendLogin(ctx);
}

/** XCLIENT value: printable ASCII without spaces. */
function xclientValue(value: string, max = 255): string {
  return value.replace(/[^\x21-\x7e]/g, '').slice(0, max);
}

class SieveBackendLogin implements BackendLogin {
  private phase: Phase = 'greeting';
  private caps = new Map<string, string>();
  private capLines = 0;
  private tlsDone = false;
  private answered = false;
  /** A server literal ({n}) announced: its payload is the next line. */
  private literalNext = false;

  constructor(private readonly ctx: BackendLoginContext) {}

  step(event: BackendEvent): BackendAction[] {
    if (this.phase === 'done') return [];
    if (event.kind === 'tls-ready') {
      if (this.phase !== 'tls-wait') return this.fail('BACKEND_PROTOCOL', 'unexpected tls-ready');
      // RFC 5804 §2.2: the server sends its capabilities again after the handshake; earlier ones are void.
      this.tlsDone = true;
      this.caps.clear();
      this.capLines = 0;
      this.phase = 'greeting';
      return [];
    }
    const line = event.line;
    switch (this.phase) {
      case 'greeting': return this.onGreeting(line);
      case 'starttls':
        if (/^OK\b/i.test(line)) {
          this.phase = 'tls-wait';
          return [{ kind: 'start-tls' }];
        }
        return this.fail('BACKEND_PROTOCOL', `STARTTLS: ${line}`);
      case 'tls-wait': return this.fail('BACKEND_PROTOCOL', `data before TLS handshake: ${line}`);
      case 'xclient':
        // A backend that does not trust us answers NO; the login still works, only without the client address.
        if (/^(OK|NO)\b/i.test(line)) return this.authenticate();
        return this.fail('BACKEND_PROTOCOL', `XCLIENT: ${line}`);
      case 'auth': return this.onAuthReply(line);
      case 'auth-error':
        return this.onAuthReply(line);
    }
    return [];
  }

  private onGreeting(line: string): BackendAction[] {
    const cap = /^"([^"]+)"(?: "([^"]*)")?$/.exec(line);
    if (cap) {
      if (++this.capLines > MAX_CAPABILITY_LINES) return this.fail('BACKEND_PROTOCOL', 'capability list too long');
      this.caps.set(cap[1]!.toUpperCase(), cap[2] ?? '');
      return [];
    }
    if (/^OK\b/i.test(line)) return this.proceed();
    if (/^(NO|BYE)\b/i.test(line)) return this.fail('BACKEND_UNAVAILABLE', `greeting: ${line}`);
    return this.fail('BACKEND_PROTOCOL', `greeting: ${line}`);
  }

  private proceed(): BackendAction[] {
    if (this.ctx.route.tls === 'starttls' && !this.tlsDone) {
      if (!this.caps.has('STARTTLS')) return this.fail('BACKEND_PROTOCOL', 'backend does not offer STARTTLS');
      this.phase = 'starttls';
      return [{ kind: 'send', bytes: `STARTTLS${CRLF}` }];
    }
    // Pigeonhole offers XCLIENT to its login_trusted_networks only; its proxy sends the same fields.
    if (this.ctx.forwardClient && this.caps.has('XCLIENT')) {
      // A trusted upstream's XCLIENT (sieve dialogue) named the client; otherwise it is the connection's.
      const up = this.ctx.clientId;
      const address = up?.['x-originating-ip'] ?? this.ctx.client.address;
      const port = up?.['x-originating-port'] ?? String(this.ctx.client.port);
      const session = xclientValue(this.ctx.sessionId, 64);
      const ttl = this.ctx.proxyTtl;
      this.phase = 'xclient';
      // Same fields as Pigeonhole's managesieve proxy (ADDR PORT SESSION TTL); TTL is the hop count (loop-guard.ts).
      return [{ kind: 'send', bytes: `XCLIENT ADDR=${xclientValue(plainAddress(address))} PORT=${port}${session ? ` SESSION=${session}` : ''}${ttl !== undefined ? ` TTL=${ttl}` : ''}${CRLF}` }];
    }
    return this.authenticate();
  }

  private initialResponse(): { mech: string; ir: string } {
    const { token, user, password } = this.ctx;
    if (token) return { mech: token.mechanism, ir: encodeTokenResponse(token.mechanism, user, token.token) };
    return { mech: 'PLAIN', ir: encodePlain(user, password) };
  }

  private authenticate(): BackendAction[] {
    const { mech, ir } = this.initialResponse();
    const offered = (this.caps.get('SASL') ?? '').toUpperCase().split(/\s+/);
    if (!offered.includes(mech)) return this.fail('BACKEND_PROTOCOL', `backend does not offer SASL ${mech} (offers: ${this.caps.get('SASL') ?? ''})`);
    this.phase = 'auth';
    return [{ kind: 'send', bytes: `AUTHENTICATE ${quote(mech)} ${quote(ir)}${CRLF}` }];
  }

  private onAuthReply(line: string): BackendAction[] {
    if (this.literalNext) {
      this.literalNext = false;
      return this.onChallenge();
    }
    if (/^OK\b/i.test(line)) {
      this.phase = 'done';
      return [{ kind: 'done', text: line }];
    }
    if (/^NO \(TRYLATER\)/i.test(line) || /^BYE\b/i.test(line)) return this.fail('BACKEND_UNAVAILABLE', `AUTHENTICATE: ${line}`);
    if (/^NO\b/i.test(line)) return this.fail('BACKEND_AUTH_FAILED', `AUTHENTICATE: ${line}`);
    if (/^\{\d+\}$/.test(line)) {
      this.literalNext = true;
      return [];
    }
    if (/^"[^"]*"$/.test(line)) return this.onChallenge();
    return this.fail('BACKEND_PROTOCOL', `AUTHENTICATE reply: ${line}`);
  }

  /** A server challenge: the PLAIN/token initial response again if ignored, or the RFC 7628 §3.2.3 acknowledgement of an error challenge. */
  private onChallenge(): BackendAction[] {
    if (this.answered) return this.fail('BACKEND_PROTOCOL', 'second SASL challenge');
    this.answered = true;
    if (this.ctx.token) {
      this.phase = 'auth-error';
      return [{ kind: 'send', bytes: `${quote(this.ctx.token.mechanism === 'OAUTHBEARER' ? TOKEN_ERROR_ACK : '')}${CRLF}` }];
    }
    return [{ kind: 'send', bytes: `${quote(this.initialResponse().ir)}${CRLF}` }];
  }

  private fail(code: FailCode, detail: string): BackendAction[] {
    this.phase = 'done';
    return [{ kind: 'fail', error: new ProxyError(code, detail) }];
  }
}
