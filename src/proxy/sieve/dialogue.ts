// Owns the client side of ManageSieve before login (RFC 5804): capability greeting, CAPABILITY/NOOP/LOGOUT/STARTTLS, XCLIENT from trusted upstreams, AUTHENTICATE PLAIN/LOGIN/OAUTHBEARER/XOAUTH2 → one Credentials.
// Must not do I/O, consult the directory or backends, or echo client input (passwords, tokens) in a reply.
import { isIP } from 'node:net';
import { isHopCount } from '../loop-guard.js';
import type { DisconnectReason, ErrorCode } from '../../errors.js';
import type { ClientAction, ClientEvent, Dialogue, DialogueOptions } from '../protocol.js';
import { LOGIN_CHALLENGE_PASS, LOGIN_CHALLENGE_USER, decodeLoginStep, decodePlain, decodeTokenResponse, isTokenCredentials, tokenErrorChallenge, type Credentials, type TokenMechanism } from '../sasl.js';
import { ActionBuffer, PreLoginCounters } from '../dialogue-kit.js';
import { SieveLineParser, type SieveParseResult, type SieveToken } from './parser.js';
import { CRLF, NO, OK, authAllowed, bye, capabilityBlock, no, quote, type SieveCapabilityState } from './replies.js';

/** A common Pigeonhole list; operators set sieve.sieveExtensions to their backends' own. */
export const DEFAULT_SIEVE_EXTENSIONS = 'fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext';

/** Commands that need a login (RFC 5804 §2): answered NO and counted as bad. */
const AUTHENTICATED_COMMANDS = new Set(['HAVESPACE', 'PUTSCRIPT', 'LISTSCRIPTS', 'SETACTIVE', 'GETSCRIPT', 'DELETESCRIPT', 'RENAMESCRIPT', 'CHECKSCRIPT', 'UNAUTHENTICATE']);
/** Client bytes held while a login runs (pipelined commands for the backend); beyond this the client is cut off. */
const MIN_PENDING_BYTES = 64 * 1024;

type Mech = 'PLAIN' | 'LOGIN' | TokenMechanism;
type State =
  | { kind: 'command' }
  | { kind: 'sasl'; mech: Mech; user?: string }
  /** RFC 7628 §3.2.2: the error challenge was sent; the client's (dummy) answer gets the failure. */
  | { kind: 'token-error'; code: ErrorCode }
  | { kind: 'tls-wait' }
  | { kind: 'login-wait'; mech: Mech }
  | { kind: 'done' };

export function createSieveDialogue(options: DialogueOptions): Dialogue {
  return new SieveDialogue(options);
}

class SieveDialogue extends ActionBuffer implements Dialogue {
  private state: State = { kind: 'command' };
  private tls: boolean;
  private readonly parser: SieveLineParser;
  private readonly pendingLimit: number;
  private readonly counters: PreLoginCounters;
  /** What a trusted upstream's XCLIENT said, in IMAP ID names (the session reads x-proxy-ttl, the backend login the address). */
  private upstream: Record<string, string> | undefined;

  constructor(private readonly options: DialogueOptions) {
    super();
    this.tls = options.tls;
    this.counters = new PreLoginCounters(options.limits);
    this.parser = new SieveLineParser(options.limits);
    this.pendingLimit = Math.max(MIN_PENDING_BYTES, options.limits.maxLineBytes + 2 * options.limits.maxLiteralBytes);
  }

  private get caps(): SieveCapabilityState {
    return {
      tls: this.tls,
      starttls: this.options.starttls,
      requireTlsForAuth: this.options.requireTlsForAuth,
      tokenMechanisms: this.options.tokenMechanisms ?? [],
      implementation: 'mailproxy',
      sieveExtensions: this.options.sieveExtensions ?? DEFAULT_SIEVE_EXTENSIONS,
      xclient: this.options.trustedUpstream === true,
    };
  }

  start(): ClientAction[] {
    const greeting = (this.options.greeting ?? 'mailproxy ManageSieve ready').replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
    this.send(capabilityBlock(this.caps, greeting));
    return this.flush();
  }

  step(event: ClientEvent): ClientAction[] {
    const state = this.state;
    if (state.kind === 'done') return [];
    switch (event.kind) {
      case 'data':
        // RFC 5804 §2.2: nothing read before the TLS handshake may be acted on after it.
        if (state.kind === 'tls-wait') return [];
        this.parser.push(event.bytes);
        if (state.kind === 'login-wait') {
          if (this.parser.buffered > this.pendingLimit) this.closeWith('LINE_TOO_LONG', 'LINE_TOO_LONG');
        } else {
          this.pump();
        }
        break;
      case 'tls-ready':
        if (state.kind !== 'tls-wait') return [];
        this.tls = true;
        this.parser.reset();
        this.state = { kind: 'command' };
        // RFC 5804 §2.2: after a successful STARTTLS the server sends its capabilities again, unasked.
        this.send(capabilityBlock(this.caps, 'TLS negotiation successful'));
        break;
      case 'login-ok':
        if (state.kind !== 'login-wait') return [];
        this.send(`${event.text}${CRLF}`);
        this.state = { kind: 'done' };
        this.emit({ kind: 'relay', pending: this.parser.drain() });
        break;
      case 'login-failed': {
        if (state.kind !== 'login-wait') return [];
        const code = event.error.code;
        if ((state.mech === 'OAUTHBEARER' || state.mech === 'XOAUTH2') && (code === 'AUTH_FAILED' || code === 'BACKEND_AUTH_FAILED')) {
          this.send(`${quote(tokenErrorChallenge({ status: state.mech === 'XOAUTH2' ? '401' : 'invalid_token', ...this.options.oauthChallenge }))}${CRLF}`);
          this.state = { kind: 'token-error', code };
          this.pump();
          break;
        }
        this.authFailed(code);
        break;
      }
      case 'deadline':
        this.closeWith('PREAUTH_TIMEOUT', 'PREAUTH_TIMEOUT');
        break;
      case 'kick':
        this.closeWith(event.error.code, event.error.code);
        break;
    }
    return this.flush();
  }

  private closeWith(code: ErrorCode, reason: DisconnectReason): void {
    this.send(bye(code));
    this.state = { kind: 'done' };
    this.parser.reset();
    this.emit({ kind: 'close', reason });
  }

  private reject(reply: string): void {
    this.send(reply);
    if (this.counters.badCommand()) this.closeWith('TOO_MANY_ERRORS', 'TOO_MANY_ERRORS');
  }

  private authFailed(code: ErrorCode): void {
    this.send(no(code));
    this.state = { kind: 'command' };
    if (this.counters.authFailure()) return this.closeWith('AUTH_FAILED', 'TOO_MANY_AUTH_FAILURES');
    this.pump();
  }

  private pump(): void {
    for (;;) {
      const s = this.state;
      if (s.kind !== 'command' && s.kind !== 'sasl' && s.kind !== 'token-error') return;
      const r = this.parser.next();
      if (!r) return;
      this.onParse(r);
    }
  }

  private onParse(r: SieveParseResult): void {
    if (r.type === 'error') {
      if (r.fatal && r.error !== 'SYNTAX') return this.closeWith(r.error, r.error);
      if (this.state.kind !== 'command') this.state = { kind: 'command' };
      return this.reject(r.error === 'SYNTAX' ? NO('Invalid command syntax') : no(r.error));
    }
    const s = this.state;
    if (s.kind === 'sasl') return this.onSaslResponse(s, r.tokens);
    if (s.kind === 'token-error') {
      this.state = { kind: 'command' };
      return this.authFailed(s.code);
    }
    this.onCommand(r.tokens);
  }

  private onCommand(tokens: SieveToken[]): void {
    const [first, ...args] = tokens;
    if (first?.type !== 'atom') return this.reject(NO('Invalid command syntax'));
    const name = first.value.toUpperCase();
    switch (name) {
      case 'CAPABILITY':
        if (args.length) return this.reject(NO('Invalid arguments'));
        return this.send(capabilityBlock(this.caps, 'Capability completed'));
      case 'NOOP': {
        // RFC 5804 §2.13: an optional string is echoed back in a TAG response code.
        const tag = args[0];
        if (args.length > 1 || (tag && tag.type !== 'string')) return this.reject(NO('Invalid arguments'));
        return this.send(tag ? `OK (TAG ${quote(tag.value)}) "Done"${CRLF}` : OK('NOOP completed'));
      }
      case 'LOGOUT':
        this.send(OK('Logout completed'));
        this.state = { kind: 'done' };
        return this.emit({ kind: 'close', reason: 'LOGOUT' });
      case 'STARTTLS':
        if (args.length || !this.options.starttls || this.tls) return this.reject(NO('STARTTLS not available'));
        this.send(OK('Begin TLS negotiation now'));
        this.parser.reset();
        this.state = { kind: 'tls-wait' };
        return this.emit({ kind: 'start-tls' });
      case 'AUTHENTICATE':
        return this.onAuthenticate(args);
      case 'XCLIENT':
        return this.onXclient(args);
      default:
        return this.reject(AUTHENTICATED_COMMANDS.has(name) ? NO('Authenticate first') : NO('Unknown command'));
    }
  }

  private onAuthenticate(args: SieveToken[]): void {
    const [mechArg, initial] = args;
    if (!mechArg || args.length > 2 || (initial && initial.type !== 'string')) return this.reject(NO('Invalid arguments'));
    const mech = mechArg.value.toUpperCase();
    const offered: string[] = ['PLAIN', 'LOGIN', ...(this.options.tokenMechanisms ?? [])];
    if (!offered.includes(mech)) return this.reject(NO('Unsupported authentication mechanism'));
    if (!authAllowed(this.caps)) return this.reject(no('TLS_REQUIRED'));
    const m = mech as Mech;
    if (initial === undefined) {
      this.state = { kind: 'sasl', mech: m };
      return this.send(`${quote(m === 'LOGIN' ? LOGIN_CHALLENGE_USER : '')}${CRLF}`);
    }
    this.onSaslData(m, undefined, initial.value);
  }

  private onSaslResponse(s: State & { kind: 'sasl' }, tokens: SieveToken[]): void {
    this.state = { kind: 'command' };
    const t = tokens[0];
    if (tokens.length !== 1 || t?.type !== 'string') return this.reject(NO('Invalid SASL response'));
    // RFC 5804 §2.1: a client aborts the exchange with "*".
    if (t.value === '*') return this.reject(NO('Authentication cancelled'));
    this.onSaslData(s.mech, s.user, t.value);
  }

  private onSaslData(mech: Mech, user: string | undefined, b64: string): void {
    if (mech === 'PLAIN') {
      const r = decodePlain(b64);
      if (r.ok) return this.login(r.credentials);
      return this.reject(r.reason === 'authzid' ? no('AUTHZ_UNSUPPORTED') : NO('Invalid SASL response'));
    }
    if (mech === 'LOGIN') {
      const value = decodeLoginStep(b64);
      if (value === null || value.includes('\0')) return this.reject(NO('Invalid SASL response'));
      if (user === undefined) {
        this.state = { kind: 'sasl', mech, user: value };
        return this.send(`${quote(LOGIN_CHALLENGE_PASS)}${CRLF}`);
      }
      return this.login({ user, password: value, mechanism: 'LOGIN' });
    }
    const r = decodeTokenResponse(mech, b64);
    if (!r.ok) return this.reject(NO('Invalid SASL response'));
    this.login(r.credentials);
  }

  /**
   * Pigeonhole's XCLIENT for trusted proxies (its managesieve proxy sends ADDR PORT SESSION TTL): TTL is the hop count,
   * ADDR/PORT the client to tell the backend. Others get NO, as from Pigeonhole. Values are checked; nothing is echoed.
   */
  private onXclient(args: SieveToken[]): void {
    if (!this.options.trustedUpstream) return this.reject(NO('You are not from trusted IP'));
    const fields = parseSieveXclient(args);
    if (!fields) return this.reject(NO('Invalid XCLIENT parameters'));
    this.upstream = { ...this.upstream, ...fields };
    this.send(OK('Updated'));
  }

  private login(credentials: Credentials): void {
    this.state = { kind: 'login-wait', mech: isTokenCredentials(credentials) ? credentials.mechanism : credentials.mechanism === 'PLAIN' ? 'PLAIN' : 'LOGIN' };
    this.emit(this.upstream ? { kind: 'login', credentials, clientId: this.upstream } : { kind: 'login', credentials });
  }
}

/**
 * XCLIENT KEY=value atoms → IMAP ID names (x-proxy-ttl, x-originating-ip, x-originating-port, x-session-id); null when
 * an argument is not an atom, a value is malformed, or nothing is there. FORWARD and unknown keys are ignored.
 */
export function parseSieveXclient(args: readonly SieveToken[]): Record<string, string> | null {
  if (!args.length) return null;
  const out: Record<string, string> = {};
  for (const a of args) {
    if (a.type !== 'atom') return null;
    const eq = a.value.indexOf('=');
    if (eq <= 0) return null;
    const key = a.value.slice(0, eq).toUpperCase();
    const value = a.value.slice(eq + 1);
    if (key === 'TTL') {
      if (!isHopCount(value)) return null;
      out['x-proxy-ttl'] = value;
    } else if (key === 'ADDR') {
      if (isIP(value) === 0) return null;
      out['x-originating-ip'] = value;
    } else if (key === 'PORT') {
      if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) return null;
      out['x-originating-port'] = value;
    } else if (key === 'SESSION') {
      if (value.length > 64) return null;
      out['x-session-id'] = value;
    }
  }
  return out;
}
