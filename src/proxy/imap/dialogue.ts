// Owns the client side of IMAP before login: greeting, CAPABILITY/NOOP/LOGOUT/ID/STARTTLS, LOGIN and AUTHENTICATE PLAIN/LOGIN → one Credentials.
// Must not do I/O, consult the directory or backends, or echo client input (passwords above all) except the command tag.
import type { DisconnectReason, ErrorCode } from '../../errors.js';
import { PIPELINED_BACKLOG_MAX_BYTES, type ClientAction, type ClientEvent, type Dialogue, type DialogueOptions } from '../protocol.js';
import { LOGIN_CHALLENGE_PASS, LOGIN_CHALLENGE_USER, decodeLoginStep, decodePlain, decodeTokenResponse, isTokenCredentials, tokenErrorChallenge } from '../sasl.js';
import type { Credentials, TokenMechanism } from '../../core/types.js';
import { ActionBuffer, PreLoginCounters } from '../dialogue-kit.js';
import { ImapCommandParser, type ImapArg, type ImapCommand, type LineResult, type ParseResult } from './parser.js';
import { CRLF, bye, capabilities, imapText, loginDisabled, quote, tagged, taggedError } from './replies.js';

const TEXT = {
  unknown: 'BAD Command unknown or not valid before login',
  syntax: 'BAD Invalid command syntax',
  args: 'BAD Invalid arguments',
  noStarttls: 'BAD STARTTLS not available',
  mechanism: 'NO Unsupported authentication mechanism',
  cancelled: 'BAD Authentication cancelled',
  saslInvalid: 'BAD Invalid SASL response',
  // Valid base64 of a message the mechanism does not take (e.g. an empty PLAIN): a failed authentication, as Dovecot answers it.
  saslFailed: 'NO [AUTHENTICATIONFAILED] Invalid SASL response',
  authBye: 'BYE Too many authentication failures',
} as const;

/** RFC 2971 §3.3: at most 30 pairs, field names ≤ 30 octets, values ≤ 1024 octets. */
const ID_MAX_PAIRS = 30;
const ID_MAX_FIELD = 30;
const ID_MAX_VALUE = 1024;

type Phase =
  | { kind: 'command' }
  | { kind: 'sasl'; tag: string; mech: 'PLAIN' }
  | { kind: 'sasl'; tag: string; mech: 'LOGIN'; user: string | null }
  | { kind: 'sasl'; tag: string; mech: TokenMechanism }
  /** RFC 7628 §3.2.2: the error challenge was sent; the client's answer (%x01) gets the tagged failure. */
  | { kind: 'token-error'; tag: string; code: ErrorCode }
  | { kind: 'tls-wait' }
  | { kind: 'login-wait'; tag: string; token?: TokenMechanism }
  | { kind: 'done' };

export function createImapDialogue(options: DialogueOptions): Dialogue {
  return new ImapDialogue(options);
}

class ImapDialogue extends ActionBuffer implements Dialogue {
  private phase: Phase = { kind: 'command' };
  private tls: boolean;
  private readonly parser: ImapCommandParser;
  private readonly counters: PreLoginCounters;
  private clientId: Record<string, string> | undefined;

  constructor(private readonly options: DialogueOptions) {
    super();
    this.tls = options.tls;
    this.counters = new PreLoginCounters(options.limits);
    this.parser = new ImapCommandParser(options.limits);
  }

  start(): ClientAction[] {
    const greeting = (this.options.greeting ?? 'mailproxy ready').replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
    this.send(`* OK [CAPABILITY ${this.caps()}] ${greeting}${CRLF}`);
    return this.flush();
  }

  step(event: ClientEvent): ClientAction[] {
    const phase = this.phase;
    if (phase.kind === 'done') return [];
    switch (event.kind) {
      case 'data':
        // RFC 9051 §6.2.1: nothing read before the TLS handshake may be acted on after it.
        if (phase.kind === 'tls-wait') return [];
        this.parser.push(event.bytes);
        if (phase.kind === 'login-wait') this.checkBacklog();
        else this.pump();
        break;
      case 'tls-ready':
        if (phase.kind !== 'tls-wait') return [];
        this.tls = true;
        this.parser.reset();
        this.phase = { kind: 'command' };
        break;
      case 'login-ok':
        if (phase.kind !== 'login-wait') return [];
        this.send(tagged(phase.tag, event.text));
        this.phase = { kind: 'done' };
        this.emit({ kind: 'relay', pending: this.parser.drain() });
        break;
      case 'login-failed': {
        if (phase.kind !== 'login-wait') return [];
        const code = event.error.code;
        if (phase.token && (code === 'AUTH_FAILED' || code === 'BACKEND_AUTH_FAILED')) {
          // RFC 7628 §3.2.2 (and XOAUTH2 alike): a refused token gets a JSON error challenge before the tagged NO.
          this.send(`+ ${tokenErrorChallenge({ status: phase.token === 'XOAUTH2' ? '401' : 'invalid_token', ...this.options.oauthChallenge })}${CRLF}`);
          this.phase = { kind: 'token-error', tag: phase.tag, code };
          this.pump();
          break;
        }
        this.loginFailed(phase.tag, code);
        break;
      }
      case 'deadline':
        this.closeWith('PREAUTH_TIMEOUT');
        break;
      case 'kick':
        this.closeWith(event.error.code);
        break;
    }
    return this.flush();
  }

  private caps(): string {
    return capabilities({ tls: this.tls, starttls: this.options.starttls, requireTlsForAuth: this.options.requireTlsForAuth, tokenMechanisms: this.options.tokenMechanisms ?? [] }).join(' ');
  }

  private loginFailed(tag: string, code: ErrorCode): void {
    this.send(taggedError(tag, code));
    this.phase = { kind: 'command' };
    if (this.counters.authFailure()) {
      this.close(`* ${TEXT.authBye}${CRLF}`, 'TOO_MANY_AUTH_FAILURES');
    } else {
      this.pump();
    }
  }

  private get loginDisabled(): boolean {
    return loginDisabled({ tls: this.tls, starttls: this.options.starttls, requireTlsForAuth: this.options.requireTlsForAuth });
  }

  private close(byeLine: string, reason: DisconnectReason): void {
    this.send(byeLine);
    this.phase = { kind: 'done' };
    this.parser.reset();
    this.emit({ kind: 'close', reason });
  }

  private closeWith(code: ErrorCode): void {
    this.close(bye(code), code);
  }

  /** A BAD or NO answered by the proxy itself; enough of them end the connection. */
  private reject(tag: string | null, text: string): void {
    this.send(`${tag ?? '*'} ${text}${CRLF}`);
    if (this.counters.badCommand()) this.closeWith('TOO_MANY_ERRORS');
  }

  /**
   * Bytes behind the login command wait unparsed (they become relay.pending if the login succeeds, are parsed as pre-login
   * commands if it fails); pre-login limits do not apply to them, only a memory bound (the Session stops reading).
   */
  private checkBacklog(): void {
    if (this.parser.buffered > PIPELINED_BACKLOG_MAX_BYTES) this.closeWith('LINE_TOO_LONG');
  }

  private pump(): void {
    for (;;) {
      const phase = this.phase;
      if (phase.kind === 'command') {
        const r = this.parser.next();
        if (!r) return;
        this.onParse(r);
      } else if (phase.kind === 'sasl') {
        const r = this.parser.nextLine();
        if (!r) return;
        this.onSaslLine(phase, r);
      } else if (phase.kind === 'token-error') {
        // Whatever the client answers (%x01, "*" or an empty XOAUTH2 line), the exchange ends with the failure.
        if (!this.parser.nextLine()) return;
        this.loginFailed(phase.tag, phase.code);
      } else {
        return;
      }
    }
  }

  private onParse(r: ParseResult): void {
    switch (r.type) {
      case 'continue':
        this.send(`+ Ready for literal data${CRLF}`);
        return;
      case 'command':
        this.onCommand(r.command);
        return;
      case 'error':
        if (r.error === 'SYNTAX') return this.reject(r.tag, TEXT.syntax);
        if (r.fatal) {
          // RFC 7888 §4: an over-limit non-synchronising literal is already in flight; the stream cannot be resynchronised.
          this.send(taggedError(r.tag, r.error));
          return this.closeWith(r.error);
        }
        return this.reject(r.tag, imapText(r.error));
    }
  }

  private onCommand(cmd: ImapCommand): void {
    const { tag, name, args } = cmd;
    switch (name) {
      case 'CAPABILITY':
        if (args.length) return this.reject(tag, TEXT.args);
        this.send(`* CAPABILITY ${this.caps()}${CRLF}`);
        this.send(tagged(tag, 'OK Capability completed'));
        return;
      case 'NOOP':
        if (args.length) return this.reject(tag, TEXT.args);
        this.send(tagged(tag, 'OK NOOP completed'));
        return;
      case 'LOGOUT':
        if (args.length) return this.reject(tag, TEXT.args);
        this.send(`* BYE Logging out${CRLF}`);
        this.close(tagged(tag, 'OK Logout completed'), 'LOGOUT');
        return;
      case 'ID':
        return this.onId(tag, args);
      case 'STARTTLS':
        return this.onStartTls(tag, args);
      case 'LOGIN':
        return this.onLogin(tag, args);
      case 'AUTHENTICATE':
        return this.onAuthenticate(tag, args);
      default:
        return this.reject(tag, TEXT.unknown);
    }
  }

  private onId(tag: string, args: ImapArg[]): void {
    const arg = args[0];
    if (args.length !== 1 || !arg) return this.reject(tag, TEXT.args);
    if (arg.type === 'atom' && arg.value.toUpperCase() === 'NIL') {
      this.clientId = undefined;
    } else if (arg.type === 'list') {
      const pairs = readIdPairs(arg.items);
      if (!pairs) return this.reject(tag, TEXT.args);
      this.clientId = pairs.length ? Object.fromEntries(pairs) : undefined;
    } else {
      return this.reject(tag, TEXT.args);
    }
    this.send(`* ID (${quote('name')} ${quote('mailproxy')})${CRLF}`);
    this.send(tagged(tag, 'OK ID completed'));
  }

  private onStartTls(tag: string, args: ImapArg[]): void {
    if (args.length) return this.reject(tag, TEXT.args);
    if (!this.options.starttls || this.tls) return this.reject(tag, TEXT.noStarttls);
    this.send(tagged(tag, 'OK Begin TLS negotiation now'));
    this.parser.reset();
    this.phase = { kind: 'tls-wait' };
    this.emit({ kind: 'start-tls' });
  }

  private onLogin(tag: string, args: ImapArg[]): void {
    const [user, password] = args;
    if (args.length !== 2 || !isAstring(user) || !isAstring(password)) return this.reject(tag, TEXT.args);
    if (this.loginDisabled) return this.reject(tag, imapText('TLS_REQUIRED'));
    this.login(tag, { user: user.value, password: password.value, mechanism: 'LOGIN' });
  }

  private onAuthenticate(tag: string, args: ImapArg[]): void {
    const [mechArg, ir] = args;
    if (args.length < 1 || args.length > 2 || mechArg?.type !== 'atom' || (ir && ir.type === 'list')) return this.reject(tag, TEXT.args);
    const mech = mechArg.value.toUpperCase();
    const token = (this.options.tokenMechanisms ?? []).find((m) => m === mech);
    if (mech !== 'PLAIN' && mech !== 'LOGIN' && !token) return this.reject(tag, TEXT.mechanism);
    if (this.loginDisabled) return this.reject(tag, imapText('TLS_REQUIRED'));
    // RFC 4959 §3: "=" is an empty initial response.
    const initial = ir ? (ir.value === '=' ? '' : ir.value) : null;
    if (token) {
      if (initial !== null) return this.finishToken(tag, token, initial);
      this.phase = { kind: 'sasl', tag, mech: token };
      this.send(`+ ${CRLF}`);
      return;
    }
    if (mech === 'PLAIN') {
      if (initial === null) {
        this.phase = { kind: 'sasl', tag, mech };
        this.send(`+ ${CRLF}`);
      } else {
        this.finishPlain(tag, initial);
      }
      return;
    }
    if (initial === null) {
      this.phase = { kind: 'sasl', tag, mech: 'LOGIN', user: null };
      this.send(`+ ${LOGIN_CHALLENGE_USER}${CRLF}`);
      return;
    }
    const user = decodeLoginStep(initial);
    if (user === null || user.includes('\0')) return this.reject(tag, TEXT.saslInvalid);
    this.phase = { kind: 'sasl', tag, mech: 'LOGIN', user };
    this.send(`+ ${LOGIN_CHALLENGE_PASS}${CRLF}`);
  }

  private onSaslLine(phase: Phase & { kind: 'sasl' }, r: LineResult): void {
    this.phase = { kind: 'command' };
    if (r.type === 'error') return this.reject(phase.tag, imapText(r.error));
    // RFC 9051 §6.2.2: a "*" line cancels the exchange, answered with a tagged BAD.
    if (r.text === '*') return this.reject(phase.tag, TEXT.cancelled);
    if (phase.mech === 'PLAIN') return this.finishPlain(phase.tag, r.text);
    if (phase.mech !== 'LOGIN') return this.finishToken(phase.tag, phase.mech, r.text);
    const value = decodeLoginStep(r.text);
    if (value === null || value.includes('\0')) return this.reject(phase.tag, TEXT.saslInvalid);
    if (phase.user === null) {
      this.phase = { kind: 'sasl', tag: phase.tag, mech: 'LOGIN', user: value };
      this.send(`+ ${LOGIN_CHALLENGE_PASS}${CRLF}`);
      return;
    }
    this.login(phase.tag, { user: phase.user, password: value, mechanism: 'LOGIN' });
  }

  private finishPlain(tag: string, b64: string): void {
    const r = decodePlain(b64);
    if (r.ok) return this.login(tag, r.credentials);
    if (r.reason === 'authzid') return this.reject(tag, imapText('AUTHZ_UNSUPPORTED'));
    this.reject(tag, r.reason === 'base64' ? TEXT.saslInvalid : TEXT.saslFailed);
  }

  private finishToken(tag: string, mech: TokenMechanism, b64: string): void {
    const r = decodeTokenResponse(mech, b64);
    if (r.ok) return this.login(tag, r.credentials);
    this.reject(tag, r.reason === 'base64' ? TEXT.saslInvalid : TEXT.saslFailed);
  }

  private login(tag: string, credentials: Credentials): void {
    this.phase = isTokenCredentials(credentials) ? { kind: 'login-wait', tag, token: credentials.mechanism } : { kind: 'login-wait', tag };
    this.emit(this.clientId ? { kind: 'login', credentials, clientId: this.clientId } : { kind: 'login', credentials });
  }
}

function isAstring(a: ImapArg | undefined): a is ImapArg & { value: string } {
  return a !== undefined && a.type !== 'list';
}

/** RFC 2971 §3.3 field/value pairs; NIL values are dropped. Null when malformed or over the limits. */
function readIdPairs(items: ImapArg[]): Array<[string, string]> | null {
  if (items.length % 2 !== 0 || items.length > 2 * ID_MAX_PAIRS) return null;
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < items.length; i += 2) {
    const field = items[i]!;
    const value = items[i + 1]!;
    if (field.type !== 'string' || Buffer.byteLength(field.value) > ID_MAX_FIELD) return null;
    if (value.type === 'atom' && value.value.toUpperCase() === 'NIL') continue;
    if (value.type !== 'string' || Buffer.byteLength(value.value) > ID_MAX_VALUE) return null;
    pairs.push([field.value, value.value]);
  }
  return pairs;
}
