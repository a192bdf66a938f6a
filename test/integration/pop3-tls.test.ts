// Proves POP3 TLS through the proxy: CAPA and USER refusal before STLS, STLS upgrade, POP3S (implicit TLS), STLS command injection.
// Must not test routing details beyond one login per path.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import type { LineClient } from './harness/line-client.js';
import { startProxy, withWorldAndProxy, worldConfig } from './proxy-fixture.js';
import { b64, cmd, greet, markers, multi, userPass } from './pop3-helpers.js';

async function capa(c: LineClient): Promise<string[]> {
  const { status, body } = await multi(c, 'CAPA');
  assert.match(status, /^\+OK/, status);
  return body.split('\r\n').filter((l) => l !== '' && l !== '.');
}

describe('POP3 TLS (STLS, POP3S, plaintext refusal, injection)', function () {
  this.timeout(30_000);
  let ca: Buffer;
  const env = withWorldAndProxy((raw) => { (raw['pop3'] as Record<string, unknown>)['requireTlsForAuth'] = true; }, {
    onReady: (world) => { ca = readFileSync(world.tls.caPath); },
  });

  it('before STLS: CAPA offers STLS but neither USER nor SASL; USER, PASS and AUTH are refused with -ERR [AUTH]', async () => {
    const { c } = await greet(env.proxy.port('pop3', 'starttls'));
    const caps = await capa(c);
    assert.ok(caps.includes('STLS'), JSON.stringify(caps));
    assert.ok(!caps.includes('USER'), JSON.stringify(caps));
    assert.ok(!caps.some((x) => x.startsWith('SASL')), JSON.stringify(caps));
    const refusal = '-ERR [AUTH] Plaintext authentication disallowed without TLS';
    assert.equal(await cmd(c, 'USER alice'), refusal);
    assert.equal(await cmd(c, `PASS ${env.world.users.alice.password}`), refusal);
    assert.equal(await cmd(c, `AUTH PLAIN ${b64(`\0alice\0${env.world.users.alice.password}`)}`), refusal);
    // Still usable: the refusals did not close the connection.
    assert.match(await cmd(c, 'STLS'), /^\+OK/);
    c.close();
  });

  it('upgrades with STLS; afterwards CAPA lists USER and SASL but not STLS, and login reaches backend-a', async () => {
    const { c } = await greet(env.proxy.port('pop3', 'starttls'));
    assert.match(await cmd(c, 'STLS'), /^\+OK/);
    const t = await c.startTls(ca);
    assert.match((t.socket as TLSSocket).getProtocol() ?? '', /^TLSv1\.[23]$/);
    const caps = await capa(t);
    assert.ok(caps.includes('USER') && caps.includes('SASL PLAIN LOGIN'), JSON.stringify(caps));
    assert.ok(!caps.includes('STLS'), JSON.stringify(caps));
    assert.match(await cmd(t, 'STLS'), /^-ERR/, 'no second STLS inside TLS');
    assert.match(await userPass(t, 'alice', env.world.users.alice.password), /^\+OK/);
    assert.deepEqual(await markers(t), ['backend-a']);
    t.close();
  });

  it('AUTH PLAIN after STLS works too', async () => {
    const { c } = await greet(env.proxy.port('pop3', 'starttls'));
    assert.match(await cmd(c, 'STLS'), /^\+OK/);
    const t = await c.startTls(ca);
    assert.match(await cmd(t, `AUTH PLAIN ${b64(`\0bob\0${env.world.users.bob.password}`)}`), /^\+OK/);
    assert.deepEqual(await markers(t), ['backend-b']);
    t.close();
  });

  it('serves POP3S (implicit TLS) with a certificate that verifies against the CA; no STLS offered; login reaches backend-b', async () => {
    const { c, greeting } = await greet(env.proxy.port('pop3', 'implicit'), { tls: true, ca });
    assert.match(greeting, /^\+OK/);
    assert.equal((c.socket as TLSSocket).authorized, true);
    const caps = await capa(c);
    assert.ok(!caps.includes('STLS'), JSON.stringify(caps));
    assert.ok(caps.includes('USER'), JSON.stringify(caps));
    assert.match(await cmd(c, 'STLS'), /^-ERR/);
    assert.match(await userPass(c, 'bob', env.world.users.bob.password), /^\+OK/);
    assert.deepEqual(await markers(c), ['backend-b']);
    c.close();
  });

  it('discards commands pipelined after STLS (no plaintext injection into the TLS session)', async () => {
    const { c } = await greet(env.proxy.port('pop3', 'starttls'));
    // A real password: if the injected USER/PASS were kept, a login would happen and +OK arrive.
    c.write(`STLS\r\nUSER alice\r\nPASS ${env.world.users.alice.password}\r\n`);
    assert.match(await c.readLine(), /^\+OK/);
    const t = await c.startTls(ca);
    assert.equal(await t.anyDataWithin(500), false, 'no reply to the injected commands');
    // The injected USER did not survive either: PASS alone finds no USER.
    assert.match(await cmd(t, `PASS ${env.world.users.alice.password}`), /^-ERR/);
    assert.match(await userPass(t, 'alice', env.world.users.alice.password), /^\+OK/);
    t.close();
  });

  it('forgets a USER given before STLS', async () => {
    const p2 = await startProxy(worldConfig(env.world));
    try {
      const { c } = await greet(p2.port('pop3', 'starttls'));
      assert.match(await cmd(c, 'USER alice'), /^\+OK/);
      assert.match(await cmd(c, 'STLS'), /^\+OK/);
      const t = await c.startTls(ca);
      assert.match(await cmd(t, `PASS ${env.world.users.alice.password}`), /^-ERR/);
      t.close();
    } finally { await p2.stop(); }
  });
});
