// Proves the IMAP pre-login dialogue by full transcripts: capabilities, LOGIN/AUTHENTICATE forms, STARTTLS injection, limits, login outcomes.
// Must not open sockets; the Session's side is played by hand-made events.
import assert from 'node:assert/strict';
import { ProxyError } from '../../../src/errors.js';
import { PIPELINED_BACKLOG_MAX_BYTES, type ClientAction } from '../../../src/proxy/protocol.js';
import { dialogue, nonSend, sent, splits, transcript } from './helpers.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const login = (user: string, password: string, mechanism = 'LOGIN', clientId?: Record<string, string>) =>
  clientId ? { kind: 'login', credentials: { user, password, mechanism }, clientId } : { kind: 'login', credentials: { user, password, mechanism } };

/** Transcript of `input` (TLS on, so logins are allowed), checked identical for every split of the input. */
function run(input: string, over = {}): Array<ClientAction | string> {
  const buf = Buffer.from(input, 'utf8');
  const whole = transcript([buf], over);
  for (const chunks of splits(buf)) assert.deepEqual(transcript(chunks, over), whole, `split ${chunks.map((c) => c.length).join('+')}`);
  return whole;
}

describe('imap dialogue', () => {
  describe('greeting and capabilities', () => {
    it('offers AUTH mechanisms over TLS', () => {
      assert.equal(dialogue().greeting, '* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN] test ready\r\n');
    });

    it('offers STARTTLS and LOGINDISABLED on a plain connection that requires TLS for auth', () => {
      assert.equal(dialogue({ tls: false, starttls: true }).greeting, '* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID STARTTLS LOGINDISABLED] test ready\r\n');
    });

    it('offers STARTTLS next to AUTH when plaintext auth is allowed', () => {
      assert.equal(dialogue({ tls: false, starttls: true, requireTlsForAuth: false }).greeting, '* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID STARTTLS AUTH=PLAIN AUTH=LOGIN] test ready\r\n');
    });

    it('uses a default greeting and strips control characters from a configured one', () => {
      assert.match(dialogue({ greeting: undefined }).greeting, /\] mailproxy ready\r\n$/);
      assert.match(dialogue({ greeting: 'evil\r\n* BYE' }).greeting, /\] evil\?\?\* BYE\r\n$/);
    });

    it('answers CAPABILITY, NOOP and LOGOUT', () => {
      assert.deepEqual(run('a CAPABILITY\r\nb noop\r\nc LOGOUT\r\nd NOOP\r\n'), [
        '* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN\r\na OK Capability completed\r\nb OK NOOP completed\r\n* BYE Logging out\r\nc OK Logout completed\r\n',
        { kind: 'close', reason: 'LOGOUT' },
      ]);
    });
  });

  describe('LOGIN', () => {
    it('takes atoms', () => {
      assert.deepEqual(run('a LOGIN alice secret\r\n'), [login('alice', 'secret')]);
    });

    it('takes quoted strings with escapes', () => {
      assert.deepEqual(run('a LOGIN "al ice" "p\\"w\\\\d"\r\n'), [login('al ice', 'p"w\\d')]);
    });

    it('takes synchronising literals, sending a continuation for each', () => {
      assert.deepEqual(run('a LOGIN {5}\r\nalice {8}\r\npäss wd\r\n'), ['+ Ready for literal data\r\n+ Ready for literal data\r\n', login('alice', 'päss wd')]);
    });

    it('takes LITERAL+ literals without continuations', () => {
      assert.deepEqual(run('a LOGIN {5+}\r\nalice {5+}\r\n"x y"\r\n'), [login('alice', '"x y"')]);
    });

    it('passes an empty password on as a login (the directory refuses it)', () => {
      assert.deepEqual(run('a LOGIN alice ""\r\n'), [login('alice', '')]);
    });

    it('rejects wrong argument counts', () => {
      assert.deepEqual(run('a LOGIN alice\r\nb LOGIN a b c\r\nc LOGIN (a) b\r\n'), ['a BAD Invalid arguments\r\nb BAD Invalid arguments\r\nc BAD Invalid arguments\r\n']);
    });
  });

  describe('AUTHENTICATE', () => {
    it('PLAIN with an initial response (SASL-IR)', () => {
      assert.deepEqual(run(`a AUTHENTICATE PLAIN ${b64('\0alice\0secret')}\r\n`), [login('alice', 'secret', 'PLAIN')]);
    });

    it('PLAIN with a continuation, mechanism name in any case', () => {
      assert.deepEqual(run(`a authenticate plain\r\n${b64('alice\0alice\0secret')}\r\n`), ['+ \r\n', login('alice', 'secret', 'PLAIN')]);
    });

    it('PLAIN with "=" (empty initial response) is invalid', () => {
      assert.deepEqual(run('a AUTHENTICATE PLAIN =\r\n'), ['a NO [AUTHENTICATIONFAILED] Invalid SASL response\r\n']);
      // Valid base64 of a PLAIN message without a user is a failed authentication (NO); not base64 at all is BAD.
      assert.deepEqual(run('a AUTHENTICATE PLAIN AGFiYw==\r\n'), ['a NO [AUTHENTICATIONFAILED] Invalid SASL response\r\n']);
    });

    it('"*" cancels the exchange with a tagged BAD', () => {
      assert.deepEqual(run('a AUTHENTICATE PLAIN\r\n*\r\nb NOOP\r\n'), ['+ \r\na BAD Authentication cancelled\r\nb OK NOOP completed\r\n']);
    });

    it('malformed base64 is BAD', () => {
      assert.deepEqual(run('a AUTHENTICATE PLAIN !!!!\r\nb AUTHENTICATE PLAIN\r\nabc\r\n'), ['a BAD Invalid SASL response\r\n+ \r\nb BAD Invalid SASL response\r\n']);
    });

    it('an authorization identity other than the user is refused (RFC 5530 AUTHORIZATIONFAILED)', () => {
      assert.deepEqual(run(`a AUTHENTICATE PLAIN ${b64('admin\0alice\0secret')}\r\n`), ['a NO [AUTHORIZATIONFAILED] Authorization identity not supported\r\n']);
    });

    it('LOGIN mechanism with two challenges', () => {
      assert.deepEqual(run(`a AUTHENTICATE LOGIN\r\n${b64('alice')}\r\n${b64('s3cret')}\r\n`), ['+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n', login('alice', 's3cret', 'LOGIN')]);
    });

    it('LOGIN mechanism with the user name as initial response', () => {
      assert.deepEqual(run(`a AUTHENTICATE LOGIN ${b64('alice')}\r\n${b64('')}\r\n`), ['+ UGFzc3dvcmQ6\r\n', login('alice', '', 'LOGIN')]);
    });

    it('LOGIN mechanism can be cancelled at the password', () => {
      assert.deepEqual(run(`a AUTHENTICATE LOGIN ${b64('alice')}\r\n*\r\n`), ['+ UGFzc3dvcmQ6\r\na BAD Authentication cancelled\r\n']);
    });

    it('an unsupported mechanism is NO', () => {
      assert.deepEqual(run('a AUTHENTICATE CRAM-MD5\r\nb AUTHENTICATE\r\n'), ['a NO Unsupported authentication mechanism\r\nb BAD Invalid arguments\r\n']);
    });
  });

  describe('TLS', () => {
    it('refuses LOGIN and AUTHENTICATE before TLS when required (LOGINDISABLED)', () => {
      const t = run(`a LOGIN alice secret\r\nb AUTHENTICATE PLAIN ${b64('\0alice\0secret')}\r\n`, { tls: false, starttls: true });
      assert.deepEqual(t, ['a NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS\r\nb NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS\r\n']);
    });

    it('STARTTLS discards pipelined bytes (command injection) and changes the capabilities', () => {
      const { feed, step } = dialogue({ tls: false, starttls: true, requireTlsForAuth: true });
      const a = feed('a STARTTLS\r\nb LOGIN x y\r\n');
      assert.equal(sent(a), 'a OK Begin TLS negotiation now\r\n');
      assert.deepEqual(nonSend(a), [{ kind: 'start-tls' }]);
      assert.deepEqual(feed('c LOGIN x y\r\n'), []);
      assert.deepEqual(step({ kind: 'tls-ready' }), []);
      assert.equal(sent(feed('d CAPABILITY\r\n')), '* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN\r\nd OK Capability completed\r\n');
      assert.equal(sent(feed('e STARTTLS\r\n')), 'e BAD STARTTLS not available\r\n');
      assert.deepEqual(feed('f LOGIN alice pw\r\n'), [login('alice', 'pw')]);
    });

    it('STARTTLS is BAD when not offered', () => {
      assert.deepEqual(run('a STARTTLS\r\n', { tls: false, starttls: false }), ['a BAD STARTTLS not available\r\n']);
    });
  });

  describe('ID', () => {
    it('answers and hands the client parameters to the login', () => {
      assert.deepEqual(run('a ID ("name" "Thunderbird" "version" "115" "os" NIL)\r\nb LOGIN u p\r\n'), [
        '* ID ("name" "mailproxy")\r\na OK ID completed\r\n',
        login('u', 'p', 'LOGIN', { name: 'Thunderbird', version: '115' }),
      ]);
    });

    it('accepts NIL and forgets earlier parameters', () => {
      assert.deepEqual(run('a ID ("name" "x")\r\nb ID NIL\r\nc LOGIN u p\r\n').at(-1), login('u', 'p'));
    });

    it('rejects malformed or oversized parameter lists', () => {
      const pairs = Array.from({ length: 31 }, (_, i) => `"k${i}" "v"`).join(' ');
      assert.deepEqual(run(`a ID ("name")\r\nb ID (${pairs})\r\nc ID ("${'k'.repeat(31)}" "v")\r\nd ID x\r\n`), [
        'a BAD Invalid arguments\r\nb BAD Invalid arguments\r\nc BAD Invalid arguments\r\nd BAD Invalid arguments\r\n',
      ]);
    });

    it('keeps a "__proto__" field as plain data', () => {
      const t = run('a ID ("__proto__" "x")\r\nb LOGIN u p\r\n');
      const action = t.at(-1) as { clientId: Record<string, string> };
      assert.equal(Object.getOwnPropertyDescriptor(action.clientId, '__proto__')?.value, 'x');
    });
  });

  describe('login outcome', () => {
    it('pipelined commands after LOGIN wait for the login and go to the relay', () => {
      const { feed, step } = dialogue();
      const a = feed('a CAPABILITY\r\nb LOGIN u p\r\nc SELECT INBOX\r\n');
      assert.equal(sent(a), '* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN\r\na OK Capability completed\r\n');
      assert.deepEqual(nonSend(a), [login('u', 'p')]);
      assert.deepEqual(feed('d FETCH 1 BODY[]\r\n'), []);
      const ok = step({ kind: 'login-ok', text: 'OK [CAPABILITY IMAP4rev1 IDLE] Logged in' });
      assert.deepEqual(ok, [
        { kind: 'send', bytes: 'b OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n' },
        { kind: 'relay', pending: Buffer.from('c SELECT INBOX\r\nd FETCH 1 BODY[]\r\n') },
      ]);
      assert.deepEqual(feed('e NOOP\r\n'), []);
      assert.deepEqual(step({ kind: 'deadline' }), []);
    });

    it('a failed login is answered from the catalogue, then pipelined commands run', () => {
      const { feed, step } = dialogue();
      assert.deepEqual(feed('a LOGIN u wrong\r\nb LOGIN u right\r\n'), [login('u', 'wrong')]);
      const r = step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') });
      assert.deepEqual(r, [{ kind: 'send', bytes: 'a NO [AUTHENTICATIONFAILED] Authentication failed\r\n' }, login('u', 'right')]);
      assert.deepEqual(step({ kind: 'login-failed', error: new ProxyError('BACKEND_DOWN') }), [{ kind: 'send', bytes: 'b NO [UNAVAILABLE] Temporary failure, please try again later\r\n' }]);
    });

    it('too many failed logins end the connection', () => {
      const { feed, step } = dialogue();
      for (let i = 1; i < 3; i++) {
        feed(`t${i} LOGIN u p${i}\r\n`);
        assert.equal(nonSend(step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') })).length, 0);
      }
      feed('t3 LOGIN u p3\r\n');
      const r = step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') });
      assert.equal(sent(r), 't3 NO [AUTHENTICATIONFAILED] Authentication failed\r\n* BYE Too many authentication failures\r\n');
      assert.deepEqual(nonSend(r), [{ kind: 'close', reason: 'TOO_MANY_AUTH_FAILURES' }]);
    });

    it('bytes behind the login are post-login input: pre-login limits do not apply, only a 1 MiB memory bound', () => {
      const { feed } = dialogue();
      feed('a LOGIN u p\r\n');
      assert.deepEqual(feed('x'.repeat(600)), [], 'far past maxLineBytes of the test limits');
      assert.deepEqual(feed(Buffer.alloc(PIPELINED_BACKLOG_MAX_BYTES - 600, 0x78)), []);
      const r = feed('x');
      assert.equal(sent(r), '* BYE Line too long\r\n');
      assert.deepEqual(nonSend(r), [{ kind: 'close', reason: 'LINE_TOO_LONG' }]);
    });

    it('an APPEND with a non-synchronising literal larger than maxLiteralBytes, pipelined behind LOGIN in one write, goes to the relay byte for byte', () => {
      const { feed, step } = dialogue();
      const body = Buffer.alloc(60_000, 0x61);
      const tail = Buffer.concat([Buffer.from(`b APPEND INBOX {${2 * 1024 * 1024}+}\r\n`), body]);
      assert.deepEqual(nonSend(feed(Buffer.concat([Buffer.from('a LOGIN u p\r\n'), tail]))), [login('u', 'p')]);
      const more = Buffer.alloc(64 * 1024, 0x62);
      assert.deepEqual(feed(more), []);
      const ok = step({ kind: 'login-ok', text: 'OK Logged in' });
      assert.deepEqual(ok, [{ kind: 'send', bytes: 'a OK Logged in\r\n' }, { kind: 'relay', pending: Buffer.concat([tail, more]) }]);
    });

    it('the same APPEND behind a failed login is a pre-login command again: its literal is over the limit', () => {
      const { feed, step } = dialogue();
      feed(`a LOGIN u p\r\nb APPEND INBOX {${2 * 1024 * 1024}+}\r\nxxxx`);
      const r = step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') });
      assert.match(sent(r), /^a NO \[AUTHENTICATIONFAILED\].*\r\nb BAD Literal too large\r\n\* BYE/s);
      assert.equal(nonSend(r).at(-1)?.kind, 'close');
    });

    it('ignores login outcomes that were not asked for', () => {
      const { step } = dialogue();
      assert.deepEqual(step({ kind: 'login-ok', text: 'OK' }), []);
      assert.deepEqual(step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') }), []);
      assert.deepEqual(step({ kind: 'tls-ready' }), []);
    });
  });

  describe('errors and limits', () => {
    it('commands other than the pre-login ones are BAD', () => {
      assert.deepEqual(run('a SELECT INBOX\r\nb ENABLE UTF8=ACCEPT\r\n'), ['a BAD Command unknown or not valid before login\r\nb BAD Command unknown or not valid before login\r\n']);
    });

    it('too many BAD/NO replies end the connection', () => {
      const t = run('a X\r\nb X\r\nc LOGIN\r\n(\r\ne AUTHENTICATE FOO\r\nf NOOP\r\n');
      assert.deepEqual(t, [
        'a BAD Command unknown or not valid before login\r\nb BAD Command unknown or not valid before login\r\nc BAD Invalid arguments\r\n* BAD Invalid command syntax\r\ne NO Unsupported authentication mechanism\r\n* BYE Too many invalid commands\r\n',
        { kind: 'close', reason: 'TOO_MANY_ERRORS' },
      ]);
    });

    it('a line too long is BAD and its rest is not read as commands', () => {
      assert.deepEqual(run(`a LOGIN ${'x'.repeat(600)}\r\nb NOOP\r\n`), ['a BAD Line too long\r\nb OK NOOP completed\r\n']);
      assert.deepEqual(run(`${'x'.repeat(600)} \r\nb NOOP\r\n`), ['* BAD Line too long\r\nb OK NOOP completed\r\n']);
    });

    it('an over-limit synchronising literal is BAD without a continuation', () => {
      assert.deepEqual(run('a LOGIN {100}\r\nb NOOP\r\n'), ['a BAD Literal too large\r\nb OK NOOP completed\r\n']);
    });

    it('an over-limit non-synchronising literal closes the connection (RFC 7888 §4)', () => {
      assert.deepEqual(run(`a LOGIN u {100+}\r\n${'p'.repeat(100)}\r\n`), ['a BAD Literal too large\r\n* BYE Literal too large\r\n', { kind: 'close', reason: 'LITERAL_TOO_LARGE' }]);
    });

    it('the pre-login deadline says BYE and closes', () => {
      const { step } = dialogue();
      assert.deepEqual(step({ kind: 'deadline' }), [{ kind: 'send', bytes: '* BYE Disconnected for inactivity\r\n' }, { kind: 'close', reason: 'PREAUTH_TIMEOUT' }]);
      assert.deepEqual(step({ kind: 'data', bytes: Buffer.from('a NOOP\r\n') }), []);
    });

    it('shutdown says BYE [UNAVAILABLE], also while a login runs', () => {
      const { feed, step } = dialogue();
      feed('a LOGIN u p\r\n');
      assert.deepEqual(step({ kind: 'kick', error: new ProxyError('SHUTDOWN') }), [{ kind: 'send', bytes: '* BYE [UNAVAILABLE] Server shutting down, please reconnect\r\n' }, { kind: 'close', reason: 'SHUTDOWN' }]);
      assert.deepEqual(step({ kind: 'login-ok', text: 'OK' }), []);
    });

    it('a kick before login says the kicking error\'s own goodbye (operator, internal), not the inactivity one', () => {
      assert.deepEqual(dialogue().step({ kind: 'kick', error: new ProxyError('ADMIN_KICK') }), [{ kind: 'send', bytes: '* BYE [UNAVAILABLE] Session closed by the administrator, please reconnect\r\n' }, { kind: 'close', reason: 'ADMIN_KICK' }]);
      const { feed, step } = dialogue();
      feed('a LOGIN u p\r\n');
      assert.deepEqual(step({ kind: 'kick', error: new ProxyError('INTERNAL') }), [{ kind: 'send', bytes: '* BYE [UNAVAILABLE] Temporary failure, please try again later\r\n' }, { kind: 'close', reason: 'INTERNAL' }]);
    });

    it('never echoes client input other than the tag', () => {
      const secret = 'Sup3rS3cret';
      const inputs = [
        `a LOGIN alice ${secret} extra\r\n`, `a LOGIN "${secret}\r\n`, `a ${secret}\r\n`, `a AUTHENTICATE ${secret}\r\n`,
        `a AUTHENTICATE PLAIN ${b64(`x\0alice\0${secret}`)}\r\n`, `a ID ("${secret}")\r\n`, `a LOGIN ${secret.repeat(60)}\r\n`,
      ];
      for (const input of inputs) {
        for (const over of [{}, { tls: false, starttls: true }]) {
          const text = run(input, over).filter((x) => typeof x === 'string').join('');
          assert.ok(!text.includes(secret) && !text.includes(b64(secret)), `${input} → ${text}`);
        }
      }
    });
  });
});
