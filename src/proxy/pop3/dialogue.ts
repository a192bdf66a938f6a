// Owns the POP3 client dialogue before login (RFC 1939, 2449 CAPA, 2595 STLS, 5034 AUTH): commands in, actions out.
// Must not do I/O, check passwords, talk to backends or relay: every login becomes one Credentials value in a `login` action.
import type { DisconnectReason, ErrorCode } from '../../errors.js';
import { PIPELINED_BACKLOG_MAX_BYTES, type ClientAction, type ClientEvent, type Dialogue, type DialogueOptions } from '../protocol.js';
import { decodeLoginStep, decodePlain, decodeTokenResponse, isTokenCredentials, LOGIN_CHALLENGE_PASS, LOGIN_CHALLENGE_USER, tokenErrorChallenge } from '../sasl.js';
import type { Credentials, TokenMechanism } from '../../core/types.js';
import { PreLoginCounters } from '../dialogue-kit.js';
import { Pop3LineParser, type Pop3LineResult } from './parser.js';
import * as R from './replies.js';

type State =
  | { name: 'command' }
  | { name: 'auth-plain' }
  | { name: 'auth-login-user' }
  | { name: 'auth-login-pass'; user: string }
  | { name: 'auth-token'; mech: TokenMechanism }
  /** RFC 7628 §3.2.2: the error challenge was sent; the client's answer gets the -ERR. */
  | { name: 'token-error'; code: ErrorCode }
  | { name: 'tls-wait' }
  | { name: 'login-wait'; token?: TokenMechanism }
  | { name: 'done' };

/** Commands valid only after login (RFC 1939 §5, RFC 2449 §6): answered -ERR and counted as bad. */
const TRANSACTION_COMMANDS = new Set(['STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'TOP', 'UIDL', 'LAST']);

const send = (bytes: string): ClientAction => ({ kind: 'send', bytes });
const close = (reason: DisconnectReason): ClientAction => ({ kind: 'close', reason });

export function createPop3Dialogue(options: DialogueOptions): Dialogue {
  return new Pop3Dialogue(options);
}

class Pop3Dialogue implements Dialogue {
  private state: State = { name: 'command' };
  private tls: boolean;
  private readonly parser: Pop3LineParser;
  private readonly pendingLimit: number;
  /** USER given and waiting for PASS (RFC 1939 §7). */
  private user: string | null = null;
  private readonly counters: PreLoginCounters;

  constructor(private readonly options: DialogueOptions) {
    this.tls = options.tls;
    this.counters = new PreLoginCounters(options.limits);
    this.parser = new Pop3LineParser(options.limits.maxLineBytes);
    // Bytes behind USER/PASS or AUTH are post-login input (pre-login line limits do not apply); only a memory bound.
    this.pendingLimit = PIPELINED_BACKLOG_MAX_BYTES;
  }

  start(): ClientAction[] {
    return [send(R.greeting(this.options.greeting))];
  }

  step(event: ClientEvent): ClientAction[] {
    if (this.state.name === 'done') return [];
    switch (event.kind) {
      case 'data':
        return this.onData(event.bytes);
      case 'tls-ready':
        if (this.state.name !== 'tls-wait') return [];
        this.tls = true;
        this.state = { name: 'command' };
        return [];
      case 'login-ok':
        if (this.state.name !== 'login-wait') return [];
        this.state = { name: 'done' };
        return [send(R.line(event.text)), { kind: 'relay', pending: this.parser.takeRemaining() }];
      case 'login-failed':
        return this.onLoginFailed(event.error.code);
      case 'deadline':
        return this.finish('PREAUTH_TIMEOUT');
      case 'kick':
        return this.finish(event.error.code);
    }
  }

  private get authAllowed(): boolean {
    return this.tls || !this.options.requireTlsForAuth;
  }

  private onData(bytes: Buffer): ClientAction[] {
    // RFC 2595 §4: bytes that arrive between STLS and the handshake are not commands; drop them.
    if (this.state.name === 'tls-wait') return [];
    this.parser.push(bytes);
    if (this.state.name === 'login-wait') {
      if (this.parser.buffered <= this.pendingLimit) return [];
      return this.finish('LINE_TOO_LONG');
    }
    return this.drain();
  }

  /** Answer buffered lines until a login, STLS or close stops the loop. */
  private drain(): ClientAction[] {
    const actions: ClientAction[] = [];
    while (this.reading()) {
      const result = this.parser.next();
      if (!result) break;
      actions.push(...this.handle(result));
    }
    return actions;
  }

  private reading(): boolean {
    const s = this.state.name;
    return s === 'command' || s === 'auth-plain' || s === 'auth-login-user' || s === 'auth-login-pass' || s === 'auth-token' || s === 'token-error';
  }

  private handle(result: Pop3LineResult): ClientAction[] {
    if (result.kind === 'too-long') {
      this.state = { name: 'command' };
      return this.bad(R.catalogueLine('LINE_TOO_LONG'));
    }
    const text = result.line;
    switch (this.state.name) {
      case 'auth-plain':
        return this.plainResponse(text, false);
      case 'auth-login-user':
        return this.loginUser(text, false);
      case 'auth-login-pass':
        return this.loginPass(this.state.user, text);
      case 'auth-token':
        return this.tokenResponse(this.state.mech, text, false);
      case 'token-error':
        // Whatever the client answers (%x01, "*" or an empty XOAUTH2 line), the exchange ends with the failure.
        return this.failLogin(this.state.code);
      default:
        return this.command(text);
    }
  }

  private command(text: string): ClientAction[] {
    if (text.includes('\0')) return this.bad(R.ERR_SYNTAX);
    const space = text.indexOf(' ');
    const verb = (space < 0 ? text : text.slice(0, space)).toUpperCase();
    const rest = space < 0 ? null : text.slice(space + 1);
    switch (verb) {
      case 'CAPA':
        return [send(R.capa({ authAllowed: this.authAllowed, stls: this.stlsOffered(), tokenMechanisms: this.options.tokenMechanisms ?? [] }))];
      case 'STLS':
        return this.stls(rest);
      case 'USER':
        if (!this.authAllowed) return this.bad(R.catalogueLine('TLS_REQUIRED'));
        if (!rest) return this.bad(R.ERR_SYNTAX);
        this.user = rest;
        return [send(R.OK_USER)];
      case 'PASS':
        return this.pass(rest);
      case 'AUTH':
        return this.auth(rest);
      case 'QUIT':
        this.state = { name: 'done' };
        return [send(R.OK_BYE), close('QUIT')];
      case 'APOP':
        return this.bad(R.ERR_APOP);
      default:
        return this.bad(TRANSACTION_COMMANDS.has(verb) ? R.ERR_NOT_AUTHENTICATED : R.ERR_UNKNOWN);
    }
  }

  private stlsOffered(): boolean {
    return this.options.starttls && !this.tls;
  }

  private stls(rest: string | null): ClientAction[] {
    if (!this.stlsOffered() || rest !== null) return this.bad(R.ERR_STLS);
    // STARTTLS injection: whatever followed STLS in the plaintext stream is discarded, as is any USER.
    this.parser.discard();
    this.user = null;
    this.state = { name: 'tls-wait' };
    return [send(R.OK_STLS), { kind: 'start-tls' }];
  }

  /** RFC 1939 §7: PASS takes the rest of the line, spaces included. */
  private pass(rest: string | null): ClientAction[] {
    const user = this.user;
    this.user = null;
    if (!this.authAllowed) return this.bad(R.catalogueLine('TLS_REQUIRED'));
    if (user === null) return this.bad(R.ERR_NO_USER);
    if (rest === null) return this.bad(R.ERR_SYNTAX);
    return this.login({ user, password: rest, mechanism: 'USER' });
  }

  private auth(rest: string | null): ClientAction[] {
    if (rest === null || rest === '') return [send(R.authMechanisms(this.authAllowed, this.options.tokenMechanisms ?? []))];
    this.user = null;
    if (!this.authAllowed) return this.bad(R.catalogueLine('TLS_REQUIRED'));
    const parts = rest.split(' ');
    if (parts.length > 2) return this.bad(R.ERR_SYNTAX);
    const mechanism = parts[0]!.toUpperCase();
    const initial = parts[1];
    if (mechanism === 'PLAIN') {
      if (initial === undefined) {
        this.state = { name: 'auth-plain' };
        return [send(R.challenge(''))];
      }
      return this.plainResponse(initial, true);
    }
    if (mechanism === 'LOGIN') {
      if (initial === undefined) {
        this.state = { name: 'auth-login-user' };
        return [send(R.challenge(LOGIN_CHALLENGE_USER))];
      }
      return this.loginUser(initial, true);
    }
    const token = (this.options.tokenMechanisms ?? []).find((m) => m === mechanism);
    if (token) {
      if (initial === undefined) {
        this.state = { name: 'auth-token', mech: token };
        return [send(R.challenge(''))];
      }
      return this.tokenResponse(token, initial, true);
    }
    return this.bad(R.ERR_MECHANISM);
  }

  /** RFC 5034 §4: "*" cancels a continuation; "=" is an empty initial response. */
  private saslText(text: string, initial: boolean): string | 'cancel' {
    if (!initial && text === '*') return 'cancel';
    return initial && text === '=' ? '' : text;
  }

  private cancel(): ClientAction[] {
    this.state = { name: 'command' };
    return [send(R.ERR_CANCELLED)];
  }

  private plainResponse(text: string, initial: boolean): ClientAction[] {
    const b64 = this.saslText(text, initial);
    if (b64 === 'cancel') return this.cancel();
    this.state = { name: 'command' };
    const result = decodePlain(b64);
    if (result.ok) return this.login(result.credentials);
    return this.bad(result.reason === 'authzid' ? R.catalogueLine('AUTHZ_UNSUPPORTED') : R.ERR_SASL_MALFORMED);
  }

  private loginUser(text: string, initial: boolean): ClientAction[] {
    const b64 = this.saslText(text, initial);
    if (b64 === 'cancel') return this.cancel();
    const user = decodeLoginStep(b64);
    if (!user || user.includes('\0')) {
      this.state = { name: 'command' };
      return this.bad(R.ERR_SASL_MALFORMED);
    }
    this.state = { name: 'auth-login-pass', user };
    return [send(R.challenge(LOGIN_CHALLENGE_PASS))];
  }

  private loginPass(user: string, text: string): ClientAction[] {
    if (text === '*') return this.cancel();
    this.state = { name: 'command' };
    const password = decodeLoginStep(text);
    if (password === null || password.includes('\0')) return this.bad(R.ERR_SASL_MALFORMED);
    return this.login({ user, password, mechanism: 'LOGIN' });
  }

  private tokenResponse(mech: TokenMechanism, text: string, initial: boolean): ClientAction[] {
    const b64 = this.saslText(text, initial);
    if (b64 === 'cancel') return this.cancel();
    this.state = { name: 'command' };
    const result = decodeTokenResponse(mech, b64);
    if (result.ok) return this.login(result.credentials);
    return this.bad(R.ERR_SASL_MALFORMED);
  }

  private login(credentials: Credentials): ClientAction[] {
    this.state = isTokenCredentials(credentials) ? { name: 'login-wait', token: credentials.mechanism } : { name: 'login-wait' };
    return [{ kind: 'login', credentials }];
  }

  private onLoginFailed(code: ErrorCode): ClientAction[] {
    const state = this.state;
    if (state.name !== 'login-wait') return [];
    if (state.token && (code === 'AUTH_FAILED' || code === 'BACKEND_AUTH_FAILED')) {
      // RFC 7628 §3.2.2 (XOAUTH2 alike): the JSON error challenge first, the -ERR after the client's answer.
      this.state = { name: 'token-error', code };
      return [send(R.challenge(tokenErrorChallenge({ status: state.token === 'XOAUTH2' ? '401' : 'invalid_token', ...this.options.oauthChallenge }))), ...this.drain()];
    }
    return this.failLogin(code);
  }

  private failLogin(code: ErrorCode): ClientAction[] {
    const reply = send(R.catalogueLine(code));
    if (this.counters.authFailure()) {
      this.state = { name: 'done' };
      return [reply, close('TOO_MANY_AUTH_FAILURES')];
    }
    this.state = { name: 'command' };
    return [reply, ...this.drain()];
  }

  /** A rejected command; at the limit the reply becomes the catalogue's and the connection closes. */
  private bad(reply: string): ClientAction[] {
    if (!this.counters.badCommand()) return [send(reply)];
    return this.finish('TOO_MANY_ERRORS');
  }

  /** Close reasons are metric labels, as the IMAP dialogue uses. */
  private finish(code: ErrorCode): ClientAction[] {
    this.state = { name: 'done' };
    return [send(R.catalogueLine(code)), close(code)];
  }
}
