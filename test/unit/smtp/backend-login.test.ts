// Proves the SMTP/LMTP backend login machine on hand-fed transcripts: EHLO/LHLO, STARTTLS, XCLIENT, AUTH PLAIN, failures.
// Must not open sockets; backend lines are fed one by one as the backend-session runner would.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendAction } from '../../../src/proxy/protocol.js';
import { SmtpBackendLogin, xtext, type SmtpBackendLoginContext } from '../../../src/proxy/smtp/backend-login.js';

const ROUTE: Route = { backend: 'b1', protocol: 'submission', host: '127.0.0.1', port: 587, tls: 'none', tlsVerify: true, servername: 'b1', trustsProxy: false, forwardClientAddress: 'none' };

function machine(over: Partial<SmtpBackendLoginContext> = {}, route: Partial<Route> = {}): SmtpBackendLogin {
  return new SmtpBackendLogin({ route: { ...ROUTE, ...route }, heloName: 'proxy.test', client: { address: '::ffff:192.0.2.7', port: 5000, localAddress: '127.0.0.1', localPort: 587 }, sessionId: 'S1', ...over });
}

/** Feed lines; actions come back with sent bytes as text. */
function feed(m: SmtpBackendLogin, ...lines: string[]): unknown[] {
  return lines.flatMap((line) => m.step({ kind: 'line', line })).map((a: BackendAction) => (a.kind === 'send' ? a.bytes.toString() : a.kind === 'fail' ? { fail: a.error.code } : a));
}

describe('smtp backend login', () => {
  it('submission: EHLO, then AUTH PLAIN; done carries the greeting; capabilities are kept', () => {
    const m = machine({ credentials: { user: 'alice*master', password: 'pw' } });
    assert.deepEqual(feed(m, '220 b1 ESMTP ready'), ['EHLO proxy.test\r\n']);
    assert.deepEqual(feed(m, '250-b1', '250-SIZE 1000', '250 AUTH PLAIN LOGIN'), [`AUTH PLAIN ${Buffer.from('\0alice*master\0pw').toString('base64')}\r\n`]);
    assert.deepEqual(feed(m, '235 2.7.0 ok'), [{ kind: 'done', text: 'b1 ESMTP ready' }]);
    assert.ok(m.has('size'));
  });

  it('LMTP says LHLO; without credentials or AUTH it is done after the greeting exchange', () => {
    const m = machine({}, { protocol: 'lmtp' });
    assert.deepEqual(feed(m, '220 b1 LMTP'), ['LHLO proxy.test\r\n']);
    assert.deepEqual(feed(m, '250 b1'), [{ kind: 'done', text: 'b1 LMTP' }]);
    assert.equal(m.lmtp, true);
  });

  it('STARTTLS first, EHLO again over TLS with fresh capabilities', () => {
    const m = machine({}, { tls: 'starttls' });
    feed(m, '220 b1');
    assert.deepEqual(feed(m, '250-b1', '250 STARTTLS'), ['STARTTLS\r\n']);
    assert.deepEqual(feed(m, '220 go ahead'), [{ kind: 'start-tls' }]);
    assert.deepEqual(m.step({ kind: 'tls-ready' }).map((a) => (a.kind === 'send' ? a.bytes : a.kind)), ['EHLO proxy.test\r\n']);
    assert.deepEqual(feed(m, '250-b1', '250 8BITMIME'), [{ kind: 'done', text: 'b1' }]);
    assert.ok(m.has('8BITMIME') && !m.has('STARTTLS'));
  });

  it('XCLIENT with only the offered attributes (xtext, IPV6: prefix), then EHLO again', () => {
    const m = machine({ xclient: { LOGIN: 'alice', HELO: 'client host', NAME: undefined } }, { trustsProxy: true, forwardClientAddress: 'native' });
    feed(m, '220 b1');
    assert.deepEqual(feed(m, '250-b1', '250 XCLIENT ADDR PORT LOGIN HELO'), ['XCLIENT ADDR=192.0.2.7 PORT=5000 LOGIN=alice HELO=client+20host\r\n']);
    assert.deepEqual(feed(m, '220 b1 hello again'), ['EHLO proxy.test\r\n']);
    assert.deepEqual(feed(m, '250-b1', '250 XCLIENT ADDR'), [{ kind: 'done', text: 'b1' }]);
    assert.equal(xtext('a=b+c'), 'a+3Db+2Bc');
  });

  it('XCLIENT TTL carries the hop count where the backend offers it (Dovecot submission and LMTP do), never otherwise', () => {
    const offered = machine({ proxyTtl: 4 }, { trustsProxy: true, forwardClientAddress: 'native' });
    feed(offered, '220 b1');
    assert.deepEqual(feed(offered, '250-b1', '250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL TIMEOUT'), ['XCLIENT ADDR=192.0.2.7 PORT=5000 SESSION=S1 TTL=4\r\n']);
    const notOffered = machine({ proxyTtl: 4 }, { trustsProxy: true, forwardClientAddress: 'native' });
    feed(notOffered, '220 b1');
    assert.deepEqual(feed(notOffered, '250-b1', '250 XCLIENT ADDR PORT'), ['XCLIENT ADDR=192.0.2.7 PORT=5000\r\n']);
  });

  it('a trusted backend without XCLIENT: noted, login goes on', () => {
    const m = machine({}, { trustsProxy: true, forwardClientAddress: 'native' });
    feed(m, '220 b1');
    assert.deepEqual(feed(m, '250 b1'), [{ kind: 'done', text: 'b1' }]);
    assert.equal(m.notes.length, 1);
  });

  it('maps failures to catalogue codes', () => {
    assert.deepEqual(feed(machine(), '554 go away'), [{ fail: 'BACKEND_UNAVAILABLE' }]);
    assert.deepEqual(feed(machine(), '220 b1', '500 what').at(-1), { fail: 'BACKEND_PROTOCOL' });
    assert.deepEqual(feed(machine({}, { tls: 'starttls' }), '220 b1', '250 b1').at(-1), { fail: 'BACKEND_PROTOCOL' }, 'STARTTLS required but not offered');
    const auth = (code: string) => feed(machine({ credentials: { user: 'u', password: 'p' } }), '220 b1', '250-b1', '250 AUTH PLAIN', `${code} no`).at(-1);
    assert.deepEqual(auth('535'), { fail: 'BACKEND_AUTH_FAILED' });
    assert.deepEqual(auth('454'), { fail: 'BACKEND_UNAVAILABLE' });
    assert.deepEqual(auth('334'), { fail: 'BACKEND_PROTOCOL' });
    assert.deepEqual(feed(machine({ credentials: { user: 'u', password: 'p' } }), '220 b1', '250-b1', '250 AUTH LOGIN').at(-1), { fail: 'BACKEND_PROTOCOL' }, 'no AUTH PLAIN');
    assert.throws(() => feed(machine(), '220-b1', '250 b1'), /code changed/);
  });
});
