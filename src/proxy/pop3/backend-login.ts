// Owns the POP3 backend login sequence: greeting, STLS (RFC 2595), Dovecot XCLIENT, AUTH PLAIN with initial response (RFC 5034).
// Must not do I/O or pass backend text to clients: backend replies become done/fail actions, detail for logs only.
import { ProxyError } from '../../errors.js';
import type { BackendAction, BackendEvent, BackendLogin, BackendLoginContext } from '../protocol.js';
import { TOKEN_ERROR_ACK, encodePlain, encodeTokenResponse } from '../sasl.js';

type Phase = 'greeting' | 'stls' | 'tls-wait' | 'xclient' | 'auth' | 'done';

/** Dovecot's login_max_session_id_len-style bound; XCLIENT values are space-separated, so no spaces either. */
const MAX_SESSION_ID = 64;

export function createPop3BackendLogin(context: BackendLoginContext): BackendLogin {
  return new Pop3BackendLogin(context);
}

/** RFC 3206 / RFC 2449 §8 codes that mean "not now" rather than "wrong credentials". */
function temporaryCode(line: string): boolean {
  return /^-ERR \[(SYS\/TEMP|SYS\/PERM|IN-USE|LOGIN-DELAY)\]/i.test(line);
}

/** RFC 2449 §8.1.1/8.1.2: IN-USE and LOGIN-DELAY concern one user's mailbox, not the backend's health. */
const userBusy = (line: string): boolean => /^-ERR \[(IN-USE|LOGIN-DELAY)\]/i.test(line);

const isOk = (line: string): boolean => /^\+OK(\s|$)/i.test(line);
const isErr = (line: string): boolean => /^-ERR(\s|$)/i.test(line);

/** XCLIENT value: printable ASCII without spaces or '=' parsing hazards. */
function xclientValue(value: string, max = 255): string {
  return value.replace(/[^\x21-\x7e]/g, '').slice(0, max);
}

class Pop3BackendLogin implements BackendLogin {
  private phase: Phase = 'greeting';
  private authContinued = false;

  constructor(private readonly ctx: BackendLoginContext) {}

  step(event: BackendEvent): BackendAction[] {
    if (this.phase === 'done') return [];
    if (event.kind === 'tls-ready') {
      if (this.phase !== 'tls-wait') return this.fail('BACKEND_PROTOCOL', 'unexpected tls-ready');
      return this.afterTls();
    }
    const line = event.line;
    switch (this.phase) {
      case 'greeting':
        return this.onGreeting(line);
      case 'stls':
        if (isOk(line)) {
          this.phase = 'tls-wait';
          return [{ kind: 'start-tls' }];
        }
        return this.fail(isErr(line) ? 'BACKEND_UNAVAILABLE' : 'BACKEND_PROTOCOL', `STLS refused: ${line}`);
      case 'tls-wait':
        // RFC 2595 §4: nothing may follow +OK before the handshake.
        return this.fail('BACKEND_PROTOCOL', `data before TLS handshake: ${line}`);
      case 'xclient':
        // A backend that does not trust us answers -ERR; the login still works, only without the client address.
        if (isOk(line) || isErr(line)) return this.auth();
        return this.fail('BACKEND_PROTOCOL', `XCLIENT reply: ${line}`);
      case 'auth':
        return this.onAuthReply(line);
    }
    return [];
  }

  private onGreeting(line: string): BackendAction[] {
    if (isErr(line)) return this.fail('BACKEND_UNAVAILABLE', `greeting: ${line}`);
    if (!isOk(line)) return this.fail('BACKEND_PROTOCOL', `greeting: ${line}`);
    if (this.ctx.route.tls === 'starttls') {
      this.phase = 'stls';
      return [{ kind: 'send', bytes: 'STLS\r\n' }];
    }
    return this.afterTls();
  }

  private afterTls(): BackendAction[] {
    if (!this.ctx.forwardClient) return this.auth();
    const { address, port } = this.ctx.client;
    this.phase = 'xclient';
    const session = xclientValue(this.ctx.sessionId, MAX_SESSION_ID);
    const ttl = this.ctx.proxyTtl;
    const args = [`ADDR=${xclientValue(address)}`, `PORT=${port}`, ...(session ? [`SESSION=${session}`] : []), ...(ttl !== undefined ? [`TTL=${ttl}`] : [])];
    return [{ kind: 'send', bytes: `XCLIENT ${args.join(' ')}\r\n` }];
  }

  /** RFC 5034 §4 initial response: PLAIN carries any password bytes, unlike USER/PASS. */
  private auth(): BackendAction[] {
    this.phase = 'auth';
    return [{ kind: 'send', bytes: `AUTH ${this.mechanism()} ${this.initialResponse()}\r\n` }];
  }

  /** PLAIN with the password, or the client's token mechanism (Dovecot oauth2 passdb). */
  private mechanism(): string {
    return this.ctx.token?.mechanism ?? 'PLAIN';
  }

  private initialResponse(): string {
    const { token, user, password } = this.ctx;
    return token ? encodeTokenResponse(token.mechanism, user, token.token) : encodePlain(user, password);
  }

  private onAuthReply(line: string): BackendAction[] {
    if (isOk(line)) {
      this.phase = 'done';
      return [{ kind: 'done', text: line }];
    }
    // A server that ignores the initial response asks with an empty challenge; answer it once.
    if ((line === '+' || line.startsWith('+ ')) && !this.authContinued) {
      this.authContinued = true;
      // With a token the challenge is RFC 7628's error JSON: acknowledge it, the -ERR follows.
      const token = this.ctx.token;
      if (token) return [{ kind: 'send', bytes: `${token.mechanism === 'OAUTHBEARER' ? TOKEN_ERROR_ACK : ''}\r\n` }];
      return [{ kind: 'send', bytes: `${this.initialResponse()}\r\n` }];
    }
    if (isErr(line)) {
      if (userBusy(line)) return this.fail('BACKEND_USER_BUSY', `AUTH: ${line}`);
      if (temporaryCode(line)) return this.fail('BACKEND_UNAVAILABLE', `AUTH: ${line}`);
      return this.fail('BACKEND_AUTH_FAILED', `AUTH: ${line}`);
    }
    return this.fail('BACKEND_PROTOCOL', `AUTH reply: ${line}`);
  }

  private fail(code: 'BACKEND_UNAVAILABLE' | 'BACKEND_USER_BUSY' | 'BACKEND_PROTOCOL' | 'BACKEND_AUTH_FAILED', detail: string): BackendAction[] {
    this.phase = 'done';
    return [{ kind: 'fail', error: new ProxyError(code, detail) }];
  }
}
