// Proves bearer-token AUTH in the SMTP backend login machine: the client's mechanism and token passed on with an initial response (after the 334 when long),
// the RFC 7628 error challenge acknowledged, a missing mechanism refused.
// Must not open sockets.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendAction } from '../../../src/proxy/protocol.js';
import { encodeTokenResponse } from '../../../src/proxy/sasl.js';
import { SmtpBackendLogin } from '../../../src/proxy/smtp/backend-login.js';

const ROUTE: Route = { backend: 'b1', protocol: 'submission', host: '127.0.0.1', port: 587, tls: 'none', tlsVerify: true, servername: 'b1', trustsProxy: false, forwardClientAddress: 'none' };
const machine = (mechanism: 'OAUTHBEARER' | 'XOAUTH2', token = 'tok') => new SmtpBackendLogin({
  route: ROUTE, heloName: 'proxy.test', client: { address: '192.0.2.7', port: 5000, localAddress: '127.0.0.1', localPort: 587 }, sessionId: 'S1',
  credentials: { user: 'alice', password: '', token: { mechanism, token } },
});
const feed = (m: SmtpBackendLogin, ...lines: string[]) => lines.flatMap((line) => m.step({ kind: 'line', line }))
  .map((a: BackendAction) => (a.kind === 'send' ? a.bytes.toString() : a.kind === 'fail' ? { fail: a.error.code } : a));

describe('smtp backend login with a bearer token', () => {
  it('AUTH OAUTHBEARER with an initial response; 235 is done', () => {
    const m = machine('OAUTHBEARER');
    feed(m, '220 b1');
    assert.deepEqual(feed(m, '250-b1', '250 AUTH PLAIN OAUTHBEARER XOAUTH2'), [`AUTH OAUTHBEARER ${encodeTokenResponse('OAUTHBEARER', 'alice', 'tok')}\r\n`]);
    assert.deepEqual(feed(m, '235 2.7.0 ok'), [{ kind: 'done', text: 'b1' }]);
  });

  it('an error challenge is acknowledged once (%x01 / empty line), then the 535 is BACKEND_AUTH_FAILED', () => {
    const ob = machine('OAUTHBEARER');
    feed(ob, '220 b1', '250-b1', '250 AUTH OAUTHBEARER');
    assert.deepEqual(feed(ob, '334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0='), ['AQ==\r\n']);
    assert.deepEqual(feed(ob, '535 5.7.8 no'), [{ fail: 'BACKEND_AUTH_FAILED' }]);
    const xo = machine('XOAUTH2');
    feed(xo, '220 b1', '250-b1', '250 AUTH XOAUTH2');
    assert.deepEqual(feed(xo, '334 eyJzdGF0dXMiOiI0MDEifQ=='), ['\r\n']);
    assert.deepEqual(feed(xo, '535 5.7.8 no'), [{ fail: 'BACKEND_AUTH_FAILED' }]);
  });

  it('a token whose AUTH line would pass 512 octets goes after the empty 334 (RFC 4954 §4); a later error challenge is still acknowledged', () => {
    const token = `h.${'p'.repeat(1500)}.s`;
    const m = machine('XOAUTH2', token);
    feed(m, '220 b1');
    assert.deepEqual(feed(m, '250-b1', '250 AUTH XOAUTH2'), ['AUTH XOAUTH2\r\n']);
    assert.deepEqual(feed(m, '334 '), [`${encodeTokenResponse('XOAUTH2', 'alice', token)}\r\n`]);
    assert.deepEqual(feed(m, '334 eyJzdGF0dXMiOiI0MDEifQ=='), ['\r\n']);
    assert.deepEqual(feed(m, '535 5.7.8 no'), [{ fail: 'BACKEND_AUTH_FAILED' }]);
    const ok = machine('OAUTHBEARER', token);
    feed(ok, '220 b1', '250-b1', '250 AUTH OAUTHBEARER', '334 ');
    assert.deepEqual(feed(ok, '235 2.7.0 ok'), [{ kind: 'done', text: 'b1' }]);
  });

  it('a backend without the mechanism is a protocol problem, not a wrong password', () => {
    const m = machine('XOAUTH2');
    feed(m, '220 b1');
    assert.deepEqual(feed(m, '250-b1', '250 AUTH PLAIN LOGIN'), [{ fail: 'BACKEND_PROTOCOL' }]);
  });
});
