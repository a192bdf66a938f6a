// Proves routing: host attribute → backend endpoint from the table, default ports for unknown names, default backend, refusals.
// Must not consult health (the gate does) or open connections.
import assert from 'node:assert/strict';
import { configSchema } from '../../../src/config/schema.js';
import { DEFAULT_PORTS, resolveRoute, routeForBackend } from '../../../src/directory/backends.js';
import { ProxyError } from '../../../src/errors.js';

const config = configSchema.parse({
  listeners: [{ protocol: 'imap', port: 143, tls: 'none' }],
  directory: { type: 'static', static: { file: 'x' } },
  routing: { defaultBackend: 'store1' },
  backends: {
    store1: { host: '127.0.0.10', imap: { port: 1143, tls: 'starttls' }, lmtp: { port: 2424 }, trustsProxy: true, tlsVerify: false, standby: 'store2' },
    store2: { host: '127.0.0.11', tlsServerName: 'store2.example.com' },
  },
});
const noDefault = { ...config, routing: {} };

const code = (f: () => unknown): string => { try { f(); } catch (e) { return (e as ProxyError).code; } return 'no error'; };

describe('routing (host attribute → backend endpoint)', () => {
  it('uses the table entry: host, per-protocol port and TLS, trust, standby', () => {
    const r = resolveRoute(config, 'store1', 'imap');
    assert.deepEqual(r, { backend: 'store1', protocol: 'imap', host: '127.0.0.10', port: 1143, tls: 'starttls', tlsVerify: false, servername: '127.0.0.10', trustsProxy: true, forwardClientAddress: 'native', standby: 'store2' });
    assert.equal(resolveRoute(config, 'store1', 'lmtp').port, 2424);
  });

  it('falls back to the protocol default port for an endpoint the entry does not list', () => {
    const r = resolveRoute(config, 'store2', 'pop3');
    assert.equal(r.port, DEFAULT_PORTS.pop3);
    assert.equal(r.tls, 'none');
    assert.equal(r.servername, 'store2.example.com');
    assert.equal(r.trustsProxy, false);
  });

  it('uses a value not in the table as a host name with default ports, untrusted', () => {
    for (const p of ['imap', 'pop3', 'submission', 'lmtp', 'smtp'] as const) {
      const r = resolveRoute(config, 'mail9.example.net', p);
      assert.equal(r.host, 'mail9.example.net');
      assert.equal(r.port, DEFAULT_PORTS[p]);
      assert.equal(r.trustsProxy, false);
    }
    assert.deepEqual(routeForBackend(config, 'mail9.example.net', 'imap'), resolveRoute(config, 'mail9.example.net', 'imap'));
  });

  it('routes an account without host attribute to the default backend, or refuses with a temporary NO_ROUTE', () => {
    assert.equal(resolveRoute(config, null, 'imap').backend, 'store1');
    assert.equal(resolveRoute(config, '  ', 'imap').backend, 'store1');
    assert.equal(code(() => resolveRoute(noDefault, null, 'imap')), 'NO_ROUTE');
    assert.match(new ProxyError('NO_ROUTE').spec.imap, /^NO \[UNAVAILABLE\]/, 'a temporary refusal');
  });

  it('refuses host attribute values that are not host names (no injection into connect)', () => {
    for (const bad of ['a b', 'x;rm', 'host/path', 'é.example', 'a\nb']) assert.equal(code(() => resolveRoute(noDefault, bad, 'imap')), 'NO_ROUTE', bad);
  });
});
