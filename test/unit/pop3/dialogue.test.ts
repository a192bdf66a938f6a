// Proves the POP3 pre-login dialogue on transcripts, each also fed split at every byte offset.
// Must not open sockets.
import assert from 'node:assert/strict';
import { ProxyError } from '../../../src/errors.js';
import { LOGIN_CHALLENGE_PASS, LOGIN_CHALLENGE_USER } from '../../../src/proxy/sasl.js';
import type { ClientEvent } from '../../../src/proxy/protocol.js';
import { data, expectTranscript, limits, options, run, type Step } from './helpers.js';

const GREETING: Step = { send: '+OK test ready.\r\n' };
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const capa = (...middle: string[]): Step => ({
  send: ['+OK Capability list follows', ...middle, 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION mailproxy', '.'].join('\r\n') + '\r\n',
});
const TLS_REQUIRED: Step = { send: '-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n' };
const loginOk: ClientEvent = { kind: 'login-ok', text: '+OK Logged in.' };
const failed = (code: 'AUTH_FAILED' | 'BACKEND_UNAVAILABLE'): ClientEvent => ({ kind: 'login-failed', error: new ProxyError(code) });

describe('pop3 dialogue', () => {
  describe('greeting and CAPA', () => {
    it('greets with +OK and a default text without APOP timestamp', () => {
      assert.deepEqual(run(options({ greeting: undefined }), []), [{ send: '+OK mailproxy ready.\r\n' }]);
    });

    it('hides USER/SASL before TLS when plaintext auth is refused, offers STLS', () => {
      expectTranscript(options(), [data('CAPA\r\n')], [GREETING, capa('STLS')]);
    });

    it('offers USER and SASL without STLS once TLS is on', () => {
      expectTranscript(options({ tls: true }), [data('capa\r\n')], [GREETING, capa('USER', 'SASL PLAIN LOGIN')]);
    });

    it('offers everything on a plain listener that allows plaintext auth', () => {
      expectTranscript(options({ requireTlsForAuth: false }), [data('CAPA\r\n')], [GREETING, capa('USER', 'SASL PLAIN LOGIN', 'STLS')]);
    });

    it('offers neither STLS nor auth when TLS is not configured and auth needs it', () => {
      expectTranscript(options({ starttls: false }), [data('CAPA\r\n')], [GREETING, capa()]);
    });

    it('CAPA after STLS shows USER and SASL and no STLS', () => {
      expectTranscript(options(), [data('STLS\r\n'), { kind: 'tls-ready' }, data('CAPA\r\n')], [
        GREETING, { send: '+OK Begin TLS negotiation\r\n' }, { startTls: true }, capa('USER', 'SASL PLAIN LOGIN'),
      ]);
    });
  });

  describe('STLS', () => {
    it('discards commands injected after STLS in the same plaintext chunk', () => {
      expectTranscript(options(), [data('STLS\r\nUSER x\r\nPASS y\r\n'), { kind: 'tls-ready' }, data('CAPA\r\n')], [
        GREETING, { send: '+OK Begin TLS negotiation\r\n' }, { startTls: true }, capa('USER', 'SASL PLAIN LOGIN'),
      ]);
    });

    it('forgets a USER given before STLS', () => {
      expectTranscript(options({ requireTlsForAuth: false }), [data('USER x\r\nSTLS\r\n'), { kind: 'tls-ready' }, data('PASS y\r\n')], [
        GREETING, { send: '+OK\r\n' }, { send: '+OK Begin TLS negotiation\r\n' }, { startTls: true }, { send: '-ERR No USER given\r\n' },
      ]);
    });

    it('refuses STLS when already on TLS or when not offered', () => {
      expectTranscript(options({ tls: true }), [data('STLS\r\n')], [GREETING, { send: '-ERR STLS not available\r\n' }]);
      expectTranscript(options({ starttls: false }), [data('STLS\r\n')], [GREETING, { send: '-ERR STLS not available\r\n' }]);
    });
  });

  describe('USER/PASS', () => {
    it('turns USER/PASS into one login with the rest of the line as password', () => {
      expectTranscript(options({ tls: true }), [data('USER alice@example.org\r\nPASS  my secret pass \r\n')], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'alice@example.org', password: ' my secret pass ', mechanism: 'USER' } },
      ]);
    });

    it('keeps UTF-8 passwords', () => {
      expectTranscript(options({ tls: true }), [data('USER bob\r\nPASS pässwörd €\r\n')], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'bob', password: 'pässwörd €', mechanism: 'USER' } },
      ]);
    });

    it('refuses PASS without USER and USER without a name', () => {
      expectTranscript(options({ tls: true }), [data('PASS x\r\nUSER\r\n')], [
        GREETING, { send: '-ERR No USER given\r\n' }, { send: '-ERR Syntax error\r\n' },
      ]);
    });

    it('refuses plaintext USER/PASS before TLS with the catalogue text', () => {
      expectTranscript(options(), [data('USER a\r\nPASS b\r\n')], [GREETING, TLS_REQUIRED, TLS_REQUIRED]);
    });

    it('allows USER/PASS without TLS when the listener permits it', () => {
      expectTranscript(options({ requireTlsForAuth: false }), [data('USER a\r\nPASS b\r\n')], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'a', password: 'b', mechanism: 'USER' } },
      ]);
    });
  });

  describe('AUTH (RFC 5034)', () => {
    const tls = options({ tls: true });

    it('lists mechanisms for AUTH without arguments', () => {
      expectTranscript(tls, [data('AUTH\r\n')], [GREETING, { send: '+OK Supported mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n' }]);
      expectTranscript(options(), [data('AUTH\r\n')], [GREETING, { send: '+OK Supported mechanisms follow\r\n.\r\n' }]);
    });

    it('AUTH PLAIN with an initial response', () => {
      expectTranscript(tls, [data(`AUTH PLAIN ${b64('\0carol\0pa ss')}\r\n`)], [
        GREETING, { login: { user: 'carol', password: 'pa ss', mechanism: 'PLAIN' } },
      ]);
    });

    it('AUTH PLAIN with a continuation', () => {
      expectTranscript(tls, [data(`auth plain\r\n${b64('carol\0carol\0pw')}\r\n`)], [
        GREETING, { send: '+ \r\n' }, { login: { user: 'carol', password: 'pw', mechanism: 'PLAIN' } },
      ]);
    });

    it('AUTH LOGIN with two challenges, and with an initial response', () => {
      expectTranscript(tls, [data(`AUTH LOGIN\r\n${b64('dave')}\r\n${b64('pw d')}\r\n`)], [
        GREETING, { send: `+ ${LOGIN_CHALLENGE_USER}\r\n` }, { send: `+ ${LOGIN_CHALLENGE_PASS}\r\n` },
        { login: { user: 'dave', password: 'pw d', mechanism: 'LOGIN' } },
      ]);
      expectTranscript(tls, [data(`AUTH LOGIN ${b64('dave')}\r\n${b64('pw')}\r\n`)], [
        GREETING, { send: `+ ${LOGIN_CHALLENGE_PASS}\r\n` }, { login: { user: 'dave', password: 'pw', mechanism: 'LOGIN' } },
      ]);
    });

    it('"*" cancels at any continuation, and the session goes on', () => {
      expectTranscript(tls, [data('AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN\r\nZGF2ZQ==\r\n*\r\nCAPA\r\n')], [
        GREETING, { send: '+ \r\n' }, { send: '-ERR Authentication cancelled\r\n' },
        { send: `+ ${LOGIN_CHALLENGE_USER}\r\n` }, { send: '-ERR Authentication cancelled\r\n' },
        { send: `+ ${LOGIN_CHALLENGE_USER}\r\n` }, { send: `+ ${LOGIN_CHALLENGE_PASS}\r\n` }, { send: '-ERR Authentication cancelled\r\n' },
        capa('USER', 'SASL PLAIN LOGIN'),
      ]);
    });

    it('"=" is an empty initial response (PLAIN: malformed); bad base64 is refused', () => {
      expectTranscript(tls, [data('AUTH PLAIN =\r\nAUTH PLAIN !!!!\r\n')], [
        GREETING, { send: '-ERR Invalid SASL response\r\n' }, { send: '-ERR Invalid SASL response\r\n' },
      ]);
    });

    it('refuses a different authorization identity with the catalogue text', () => {
      expectTranscript(tls, [data(`AUTH PLAIN ${b64('admin\0carol\0pw')}\r\n`)], [
        GREETING, { send: '-ERR [AUTH] Authorization identity not supported\r\n' },
      ]);
    });

    it('refuses unknown mechanisms and plaintext mechanisms before TLS', () => {
      expectTranscript(tls, [data('AUTH CRAM-MD5\r\n')], [GREETING, { send: '-ERR Unsupported authentication mechanism\r\n' }]);
      expectTranscript(options(), [data(`AUTH PLAIN ${b64('\0a\0b')}\r\n`)], [GREETING, TLS_REQUIRED]);
    });
  });

  describe('login outcome', () => {
    const tls = options({ tls: true });

    it('pipelined USER, PASS, STAT: login, then STAT goes to the relay', () => {
      expectTranscript(tls, [data('USER a\r\nPASS b\r\nSTAT\r\n'), loginOk], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'a', password: 'b', mechanism: 'USER' } },
        { send: '+OK Logged in.\r\n' }, { relay: 'STAT\r\n' },
      ]);
    });

    it('holds pipelined commands during login and hands them to the relay', () => {
      expectTranscript(tls, [data('USER a\r\nPASS b\r\nSTAT\r\n'), data('LIST\r\nRE'), loginOk], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'a', password: 'b', mechanism: 'USER' } },
        { send: '+OK Logged in.\r\n' }, { relay: 'STAT\r\nLIST\r\nRE' },
      ]);
    });

    it('answers a failed login from the catalogue and reads on', () => {
      expectTranscript(tls, [data('USER a\r\nPASS b\r\nUSER a\r\nPASS c\r\n'), failed('AUTH_FAILED'), failed('BACKEND_UNAVAILABLE')], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'a', password: 'b', mechanism: 'USER' } },
        { send: '-ERR [AUTH] Authentication failed\r\n' }, { send: '+OK\r\n' }, { login: { user: 'a', password: 'c', mechanism: 'USER' } },
        { send: '-ERR [SYS/TEMP] Temporary failure, please try again later\r\n' },
      ]);
    });

    it('closes after maxAuthAttempts failures', () => {
      const opts = options({ tls: true, limits: limits({ maxAuthAttempts: 2 }) });
      expectTranscript(opts, [data('USER a\r\nPASS b\r\n'), failed('AUTH_FAILED'), data('USER a\r\nPASS c\r\nCAPA\r\n'), failed('AUTH_FAILED'), data('CAPA\r\n')], [
        GREETING, { send: '+OK\r\n' }, { login: { user: 'a', password: 'b', mechanism: 'USER' } },
        { send: '-ERR [AUTH] Authentication failed\r\n' },
        { send: '+OK\r\n' }, { login: { user: 'a', password: 'c', mechanism: 'USER' } },
        { send: '-ERR [AUTH] Authentication failed\r\n' }, { close: 'TOO_MANY_AUTH_FAILURES' },
      ]);
    });

    it('holds bytes behind the login past pre-login limits (post-login input), and cuts off only beyond 1 MiB', () => {
      const held = run(tls, [data('USER a\r\nPASS b\r\n'), data(Buffer.alloc(70_000, 0x41)), loginOk]);
      assert.deepEqual(held.at(-1), { relay: 'A'.repeat(70_000) });
      const steps = run(tls, [data('USER a\r\nPASS b\r\n'), data(Buffer.alloc(1024 * 1024 + 1, 0x41)), loginOk]);
      assert.deepEqual(steps.slice(-2), [{ send: '-ERR Line too long\r\n' }, { close: 'LINE_TOO_LONG' }]);
    });

    it('ignores login results when no login is running', () => {
      assert.deepEqual(run(tls, [loginOk, failed('AUTH_FAILED')]), [GREETING]);
    });
  });

  describe('errors, limits and endings', () => {
    it('answers transaction commands before login with -ERR and counts them', () => {
      const opts = options({ limits: limits({ maxBadCommands: 3 }) });
      expectTranscript(opts, [data('NOOP\r\nFOO bar\r\n\r\nCAPA\r\n')], [
        GREETING, { send: '-ERR Not logged in\r\n' }, { send: '-ERR Unknown command\r\n' },
        { send: '-ERR Too many invalid commands\r\n' }, { close: 'TOO_MANY_ERRORS' },
      ]);
    });

    it('answers an over-long line once, skips it, and reads on; bare LF is a line end', () => {
      const opts = options({ limits: limits({ maxLineBytes: 512 }) });
      expectTranscript(opts, [data(`${'X'.repeat(600)}\r\nCAPA\nRETR${' '.repeat(508)}\r\n`)], [
        GREETING, { send: '-ERR Line too long\r\n' }, capa('STLS'), { send: '-ERR Not logged in\r\n' },
      ]);
    });

    it('an over-long SASL response ends the exchange', () => {
      const opts = options({ tls: true, limits: limits({ maxLineBytes: 512 }) });
      expectTranscript(opts, [data(`AUTH PLAIN\r\n${'A'.repeat(700)}\r\nCAPA\r\n`)], [
        GREETING, { send: '+ \r\n' }, { send: '-ERR Line too long\r\n' }, capa('USER', 'SASL PLAIN LOGIN'),
      ]);
    });

    it('QUIT says goodbye and closes; nothing after it is read', () => {
      expectTranscript(options(), [data('QUIT\r\nCAPA\r\n'), data('CAPA\r\n')], [GREETING, { send: '+OK Bye\r\n' }, { close: 'QUIT' }]);
    });

    it('deadline and shutdown close with the catalogue text', () => {
      assert.deepEqual(run(options(), [{ kind: 'deadline' }, data('CAPA\r\n')]), [
        GREETING, { send: '-ERR Disconnected for inactivity\r\n' }, { close: 'PREAUTH_TIMEOUT' },
      ]);
      assert.deepEqual(run(options(), [{ kind: 'kick', error: new ProxyError('SHUTDOWN') }]), [
        GREETING, { send: '-ERR [SYS/TEMP] Server shutting down\r\n' }, { close: 'SHUTDOWN' },
      ]);
    });

    it('a kick before login says the kicking error\'s own goodbye, not the inactivity one', () => {
      assert.deepEqual(run(options({ tls: true }), [data('USER alice\r\n'), { kind: 'kick', error: new ProxyError('ADMIN_KICK') }]), [
        GREETING, { send: '+OK\r\n' }, { send: '-ERR [SYS/TEMP] Session closed by the administrator, please reconnect\r\n' }, { close: 'ADMIN_KICK' },
      ]);
    });

    it('refuses APOP and NUL bytes', () => {
      expectTranscript(options({ tls: true }), [data('APOP a b\r\nUSER a\0b\r\n')], [
        GREETING, { send: '-ERR APOP not supported\r\n' }, { send: '-ERR Syntax error\r\n' },
      ]);
    });
  });
});
