// Proves IMAP TLS through the proxy: STARTTLS, implicit TLS, LOGINDISABLED before TLS, STARTTLS command injection.
// Must not test routing details beyond one login per path.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { withWorldAndProxy } from './proxy-fixture.js';
import { firstMessageHeader, greet } from './imap-helpers.js';

describe('IMAP TLS (STARTTLS, implicit, injection)', function () {
  this.timeout(30_000);
  let ca: Buffer;
  const env = withWorldAndProxy((raw) => { (raw['imap'] as Record<string, unknown>)['requireTlsForAuth'] = true; }, {
    onReady: (world) => { ca = readFileSync(world.tls.caPath); },
  });

  it('advertises LOGINDISABLED and refuses LOGIN before STARTTLS', async () => {
    const { c, greeting } = await greet(env.proxy.port('imap', 'starttls'));
    assert.match(greeting, /LOGINDISABLED/);
    assert.doesNotMatch(greeting, /AUTH=PLAIN/);
    const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
    assert.match(r, /^a NO \[PRIVACYREQUIRED\]/m);
    c.close();
  });

  it('upgrades with STARTTLS, then logs in and reaches backend-a', async () => {
    const { c } = await greet(env.proxy.port('imap', 'starttls'));
    assert.match(await c.command('s', 'STARTTLS'), /^s OK/m);
    const t = await c.startTls(ca);
    assert.equal((t.socket as import('node:tls').TLSSocket).getProtocol()?.startsWith('TLSv1.'), true);
    const cap = await t.command('c', 'CAPABILITY');
    assert.doesNotMatch(cap, /STARTTLS|LOGINDISABLED/);
    assert.match(cap, /AUTH=PLAIN/);
    assert.match(await t.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    assert.match(await firstMessageHeader(t, 'X-Test-Backend'), /backend-a/);
    t.close();
  });

  it('serves implicit TLS (993-style) with a certificate that verifies against the CA', async () => {
    const { c, greeting } = await greet(env.proxy.port('imap', 'implicit'), { tls: true, ca });
    assert.match(greeting, /^\* OK/);
    assert.doesNotMatch(greeting, /STARTTLS/);
    assert.match(await c.command('a', `LOGIN bob ${env.world.users.bob.password}`), /^a OK/m);
    assert.match(await firstMessageHeader(c, 'X-Test-Backend'), /backend-b/);
    c.close();
  });

  it('refuses TLS versions below 1.2', async () => {
    const err = await new Promise<Error | null>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: env.proxy.port('imap', 'implicit'), ca, servername: 'localhost', maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
      s.once('secureConnect', () => { s.destroy(); resolve(null); });
      s.once('error', (e) => resolve(e));
    });
    assert.ok(err, 'a TLS 1.1 handshake must fail');
  });

  it('discards commands pipelined after STARTTLS (no plaintext injection into the TLS session)', async () => {
    const { c } = await greet(env.proxy.port('imap', 'starttls'));
    c.write(`s STARTTLS\r\nx LOGIN alice ${env.world.users.alice.password}\r\n`);
    assert.match(await c.readLine(), /^s OK/);
    const t = await c.startTls(ca);
    // If the injected LOGIN had been kept, an "x OK"/"x NO" would arrive now.
    assert.equal(await t.anyDataWithin(500), false);
    assert.match(await t.command('n', 'NOOP'), /^n OK/m);
    t.close();
  });

  it('rejects a second STARTTLS inside TLS', async () => {
    const { c } = await greet(env.proxy.port('imap', 'implicit'), { tls: true, ca });
    assert.match(await c.command('s', 'STARTTLS'), /^s (BAD|NO)/m);
    c.close();
  });
});
