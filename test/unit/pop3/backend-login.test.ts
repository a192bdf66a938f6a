// Proves the POP3 backend login machine on transcripts: greeting, STLS, XCLIENT, AUTH PLAIN, failure classification.
// Must not open sockets.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendAction, BackendEvent, BackendLoginContext } from '../../../src/proxy/protocol.js';
import { createPop3BackendLogin } from '../../../src/proxy/pop3/backend-login.js';
import { pop3Module } from '../../../src/proxy/pop3/index.js';
import { ProxyError } from '../../../src/errors.js';

function route(over: Partial<Route> = {}): Route {
  return { backend: 'b1', protocol: 'pop3', host: 'b1.internal', port: 110, tls: 'none', tlsVerify: true, servername: 'b1.internal', trustsProxy: true, forwardClientAddress: 'native', ...over };
}

function context(over: Partial<BackendLoginContext> = {}): BackendLoginContext {
  return {
    user: 'alice', password: 'pa ss wörd', route: route(),
    client: { address: '192.0.2.10', port: 51234, localAddress: '198.51.100.1', localPort: 110 },
    sessionId: 'sess-1', forwardClient: false, ...over,
  };
}

type Out = { send: string } | { startTls: true } | { done: string } | { fail: string; detail: string | undefined };
function norm(a: BackendAction): Out {
  switch (a.kind) {
    case 'send': return { send: a.bytes.toString() };
    case 'start-tls': return { startTls: true };
    case 'done': return { done: a.text };
    case 'fail': return { fail: a.error.code, detail: a.error.detail };
  }
}

/** Step through `script`: each backend event paired with the actions it must produce. */
function transcript(ctx: BackendLoginContext, script: Array<[BackendEvent, Out[]]>): void {
  const login = createPop3BackendLogin(ctx);
  script.forEach(([event, expected], i) => assert.deepEqual(login.step(event).map(norm), expected, `step ${i}: ${JSON.stringify(event)}`));
}

const line = (l: string): BackendEvent => ({ kind: 'line', line: l });
const plain = (user: string, pass: string): string => Buffer.from(`\0${user}\0${pass}`, 'utf8').toString('base64');
const AUTH = `AUTH PLAIN ${plain('alice', 'pa ss wörd')}\r\n`;

describe('pop3 backend login', () => {
  it('Dovecot-like: greeting, XCLIENT, AUTH PLAIN, +OK Logged in.', () => {
    transcript(context({ forwardClient: true }), [
      [line('+OK Dovecot (Debian) ready.'), [{ send: 'XCLIENT ADDR=192.0.2.10 PORT=51234 SESSION=sess-1\r\n' }]],
      [line('+OK Updated'), [{ send: AUTH }]],
      [line('+OK Logged in.'), [{ done: '+OK Logged in.' }]],
      [line('+OK ignored'), []],
    ]);
  });

  it('passes the hop count as XCLIENT TTL (loop protection)', () => {
    transcript(context({ forwardClient: true, proxyTtl: 2 }), [
      [line('+OK Dovecot (Debian) ready.'), [{ send: 'XCLIENT ADDR=192.0.2.10 PORT=51234 SESSION=sess-1 TTL=2\r\n' }]],
    ]);
  });

  it('logs in without XCLIENT when the client address is not forwarded', () => {
    transcript(context(), [
      [line('+OK ready'), [{ send: AUTH }]],
      [line('+OK'), [{ done: '+OK' }]],
    ]);
  });

  it('goes on when XCLIENT is refused; IPv6 address, session id stripped of spaces', () => {
    transcript(context({ forwardClient: true, sessionId: 'a b\r\nc', client: { address: '2001:db8::5', port: 1, localAddress: '::1', localPort: 110 } }), [
      [line('+OK ready'), [{ send: 'XCLIENT ADDR=2001:db8::5 PORT=1 SESSION=abc\r\n' }]],
      [line('-ERR You are not from trusted IP'), [{ send: AUTH }]],
      [line('+OK Logged in.'), [{ done: '+OK Logged in.' }]],
    ]);
  });

  it('STLS path: STLS, start-tls, then AUTH after tls-ready', () => {
    transcript(context({ route: route({ tls: 'starttls' }), forwardClient: true }), [
      [line('+OK Dovecot ready.'), [{ send: 'STLS\r\n' }]],
      [line('+OK Begin TLS negotiation now.'), [{ startTls: true }]],
      [{ kind: 'tls-ready' }, [{ send: 'XCLIENT ADDR=192.0.2.10 PORT=51234 SESSION=sess-1\r\n' }]],
      [line('+OK'), [{ send: AUTH }]],
      [line('+OK Logged in.'), [{ done: '+OK Logged in.' }]],
    ]);
  });

  it('STLS refused is a backend failure; data before the handshake is a protocol error', () => {
    transcript(context({ route: route({ tls: 'starttls' }) }), [
      [line('+OK ready'), [{ send: 'STLS\r\n' }]],
      [line('-ERR TLS support isn\'t enabled.'), [{ fail: 'BACKEND_UNAVAILABLE', detail: 'STLS refused: -ERR TLS support isn\'t enabled.' }]],
    ]);
    transcript(context({ route: route({ tls: 'starttls' }) }), [
      [line('+OK ready'), [{ send: 'STLS\r\n' }]],
      [line('+OK go'), [{ startTls: true }]],
      [line('+OK injected'), [{ fail: 'BACKEND_PROTOCOL', detail: 'data before TLS handshake: +OK injected' }]],
    ]);
  });

  it('-ERR [AUTH] and plain -ERR are authentication failures', () => {
    for (const reply of ['-ERR [AUTH] Authentication failed.', '-ERR Authentication failed.']) {
      transcript(context(), [
        [line('+OK ready'), [{ send: AUTH }]],
        [line(reply), [{ fail: 'BACKEND_AUTH_FAILED', detail: `AUTH: ${reply}` }]],
      ]);
    }
  });

  it('-ERR [SYS/TEMP] is a temporary backend failure', () => {
    const reply = '-ERR [SYS/TEMP] Temporary authentication failure.';
    transcript(context(), [
      [line('+OK ready'), [{ send: AUTH }]],
      [line(reply), [{ fail: 'BACKEND_UNAVAILABLE', detail: `AUTH: ${reply}` }]],
    ]);
  });

  it('-ERR [IN-USE] and [LOGIN-DELAY] are temporary for this user only: the backend is alive (no health failure)', () => {
    for (const reply of ['-ERR [IN-USE] Mailbox locked', '-ERR [LOGIN-DELAY] Wait a minute']) {
      transcript(context(), [
        [line('+OK ready'), [{ send: AUTH }]],
        [line(reply), [{ fail: 'BACKEND_USER_BUSY', detail: `AUTH: ${reply}` }]],
      ]);
    }
    assert.equal(new ProxyError('BACKEND_USER_BUSY').spec.health, 'backend-alive');
    assert.match(new ProxyError('BACKEND_USER_BUSY').spec.pop3, /^-ERR \[IN-USE\]/);
  });

  it('answers an empty continuation once when the server ignores the initial response', () => {
    transcript(context(), [
      [line('+OK ready'), [{ send: AUTH }]],
      [line('+ '), [{ send: `${plain('alice', 'pa ss wörd')}\r\n` }]],
      [line('+ '), [{ fail: 'BACKEND_PROTOCOL', detail: 'AUTH reply: + ' }]],
    ]);
  });

  it('refusing greeting, garbage greeting, garbage reply and stray tls-ready', () => {
    transcript(context(), [[line('-ERR [SYS/TEMP] too many connections'), [{ fail: 'BACKEND_UNAVAILABLE', detail: 'greeting: -ERR [SYS/TEMP] too many connections' }]]]);
    transcript(context(), [[line('* OK IMAP4rev1'), [{ fail: 'BACKEND_PROTOCOL', detail: 'greeting: * OK IMAP4rev1' }]]]);
    transcript(context(), [[line('+OKAY'), [{ fail: 'BACKEND_PROTOCOL', detail: 'greeting: +OKAY' }]]]);
    transcript(context(), [[line('+OK'), [{ send: AUTH }]], [line('hello'), [{ fail: 'BACKEND_PROTOCOL', detail: 'AUTH reply: hello' }]]]);
    transcript(context(), [[{ kind: 'tls-ready' }, [{ fail: 'BACKEND_PROTOCOL', detail: 'unexpected tls-ready' }]], [line('+OK'), []]]);
  });
});

describe('pop3 module', () => {
  it('says goodbye with the catalogue line', () => {
    assert.equal(pop3Module.protocol, 'pop3');
    assert.equal(pop3Module.goodbye(new ProxyError('BACKEND_DOWN')), '-ERR [SYS/TEMP] Temporary failure, please try again later\r\n');
    assert.equal(pop3Module.goodbye(new ProxyError('SHUTDOWN')), '-ERR [SYS/TEMP] Server shutting down\r\n');
  });
});
