// Proves TLS from the proxy to the backend (implicit and STARTTLS), verified against a configured CA and name, and the refusals.
// Must not test client-facing TLS (imap-tls / pop3-tls tests do).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startProxy, withWorldAndProxy, worldConfig, type RawConfig } from './proxy-fixture.js';
import { firstMessageHeader, greet } from './imap-helpers.js';
import { LineClient } from './harness/line-client.js';
import type { World } from './harness/world.js';

function backendTls(world: World, over: Record<string, unknown> = {}) {
  return (raw: RawConfig) => {
    const backends = raw['backends'] as Record<string, Record<string, unknown>>;
    const ca = readFileSync(world.tls.caPath, 'utf8');
    Object.assign(backends['backend-a']!, { imap: { port: world.backends.a.ports.imaps, tls: 'implicit' }, pop3: { port: world.backends.a.ports.pop3s, tls: 'implicit' }, tlsVerify: true, tlsCa: ca, ...over });
    Object.assign(backends['backend-b']!, { imap: { port: world.backends.b.ports.imap, tls: 'starttls' }, pop3: { port: world.backends.b.ports.pop3, tls: 'starttls' }, tlsVerify: true, tlsCa: ca, ...over });
  };
}

describe('TLS towards the backends (real Dovecot)', function () {
  this.timeout(30_000);
  const env = withWorldAndProxy((raw, world) => backendTls(world)(raw));

  it('IMAP: implicit TLS to backend-a and STARTTLS to backend-b, certificates verified against the configured CA', async () => {
    for (const [user, backend] of [['alice', 'backend-a'], ['bob', 'backend-b']] as const) {
      const { c } = await greet(env.proxy.port('imap', 'starttls'));
      const r = await c.command('a', `LOGIN ${user} ${env.world.users[user].password}`);
      assert.match(r, /^a OK/m, r);
      assert.match(await firstMessageHeader(c, 'X-Test-Backend'), new RegExp(backend));
      c.close();
    }
    let log = '';
    for (let i = 0; i < 40 && !/Login: user=<bob>.*TLS/.test(log); i++) { await new Promise((r) => setTimeout(r, 50)); log = await env.world.backends.b.readLog(); }
    assert.match(log, /imap-login: Info: Login: user=<bob>.*TLS/);
    assert.match(await env.world.backends.a.readLog(), /imap-login: Info: Login: user=<alice>.*TLS/);
  });

  it('POP3: implicit TLS and STLS to the backends', async () => {
    for (const user of ['alice', 'bob'] as const) {
      const c = await LineClient.connect(env.proxy.port('pop3', 'starttls'));
      assert.match(await c.readLine(), /^\+OK/);
      c.send(`USER ${user}`); await c.readLine();
      c.send(`PASS ${env.world.users[user].password}`);
      assert.match(await c.readLine(), /^\+OK/);
      c.close();
    }
  });

  it('refuses a backend whose certificate the CA does not vouch for, or whose name does not match: temporary failure, not a password error', async () => {
    for (const over of [{ tlsCa: undefined }, { tlsServerName: 'not-the-backend.example' }]) {
      const p = await startProxy(worldConfig(env.world, backendTls(env.world, over)));
      try {
        for (const user of ['alice', 'bob'] as const) {
          const { c } = await greet(p.port('imap', 'starttls'));
          assert.match(await c.command('a', `LOGIN ${user} ${env.world.users[user].password}`), /^a NO \[UNAVAILABLE\]/m, `${user} ${JSON.stringify(over)}`);
          c.close();
        }
        assert.ok(p.logs.some((l) => l['code'] === 'BACKEND_UNAVAILABLE' && /TLS/.test(String(l['detail']))));
      } finally { await p.stop(); }
    }
  });
});
