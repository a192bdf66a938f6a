// Proves the IMAP failure answers against real slapd + Dovecot: bad credentials, no host, dead backend, hostile names, limits.
// Must not test successful routing (imap-login tests do).
import assert from 'node:assert/strict';
import { withWorldAndProxy } from './proxy-fixture.js';
import { greet } from './imap-helpers.js';
import { LineClient } from './harness/line-client.js';

describe('IMAP failure answers (real slapd + Dovecot)', function () {
  this.timeout(30_000);
  let port: number;
  const env = withWorldAndProxy((raw) => {
    (raw['imap'] as Record<string, unknown>)['limits'] = { authFailureDelayMs: 400, authFailureMaxDelayMs: 400, maxBadCommands: 3, maxLineBytes: 1024, preAuthDeadlineMs: 1500 };
  }, { onReady: (_world, proxy) => { port = proxy.port('imap', 'starttls'); } });

  async function loginReply(user: string, password: string): Promise<{ reply: string; ms: number }> {
    const { c } = await greet(port);
    const t0 = Date.now();
    const reply = await c.command('a', `LOGIN "${user}" "${password}"`);
    const ms = Date.now() - t0;
    c.close();
    return { reply, ms };
  }

  it('answers a wrong password and an unknown user identically, after the failure delay', async () => {
    const wrong = await loginReply('alice', 'not-her-password');
    const unknown = await loginReply('nobody-here', 'whatever');
    assert.equal(wrong.reply, 'a NO [AUTHENTICATIONFAILED] Authentication failed');
    assert.equal(unknown.reply, wrong.reply);
    assert.ok(wrong.ms >= 380 && unknown.ms >= 380, `delays ${wrong.ms} / ${unknown.ms}`);
  });

  it('refuses an empty password without an LDAP anonymous bind succeeding', async () => {
    const r = await loginReply('alice', '');
    assert.equal(r.reply, 'a NO [AUTHENTICATIONFAILED] Authentication failed');
  });

  it('does not make other clients wait while one is being delayed', async () => {
    const slow = loginReply('alice', 'wrong');
    const t0 = Date.now();
    const { c, greeting } = await greet(port);
    assert.match(greeting, /^\* OK/);
    assert.match(await c.command('n', 'NOOP'), /^n OK/m);
    assert.ok(Date.now() - t0 < 300, 'a second client was served while the first waited');
    c.close();
    await slow;
  });

  it('gives a temporary failure for an account without mailHost (carol)', async () => {
    const r = await loginReply('carol', env.world.users.carol.password);
    assert.match(r.reply, /^a NO \[UNAVAILABLE\]/);
  });

  it('gives a temporary failure, fast, when the account\'s backend is unreachable (dave)', async () => {
    const r = await loginReply('dave', env.world.users.dave.password);
    assert.match(r.reply, /^a NO \[UNAVAILABLE\]/);
    assert.ok(r.ms < 2000, `took ${r.ms} ms`);
  });

  it('treats LDAP filter metacharacters in the login name as plain characters (no match, no injection)', async () => {
    for (const name of ['*', 'al*', 'alice)(uid=*', '*)(|(uid=*', 'alice\\2a', '(uid=alice)']) {
      const { reply } = await loginReply(name.replace(/\\/g, '\\\\'), env.world.users.alice.password);
      assert.equal(reply, 'a NO [AUTHENTICATIONFAILED] Authentication failed', name);
    }
  });

  it('answers unknown and not-yet-allowed commands with BAD and closes after too many', async () => {
    const { c } = await greet(port);
    assert.match(await c.command('a', 'SELECT INBOX'), /^a (BAD|NO)/m);
    assert.match(await c.command('b', 'FROBNICATE'), /^b BAD/m);
    c.send('c XYZZY');
    const out = await c.readUntil(/^\* BYE/);
    assert.match(out, /^\* BYE/m);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.isClosed);
  });

  it('refuses an over-long line with BAD and does not run what followed it on that line', async () => {
    const { c } = await greet(port);
    c.send(`a LOGIN alice ${'x'.repeat(2000)} b NOOP`);
    const r = await c.readLine();
    assert.match(r, /BAD/);
    assert.match(await c.command('n', 'NOOP'), /^n OK/m);
    c.close();
  });

  it('refuses a literal larger than the limit without reading it as commands', async () => {
    const { c } = await greet(port);
    c.send('a LOGIN {100000}');
    const r = await c.readLine();
    assert.match(r, /^a BAD|^\* BYE/);
    c.close();
  });

  it('closes an idle unauthenticated connection at the pre-login deadline with * BYE', async () => {
    const { c } = await greet(port);
    const out = await c.readUntil(/^\* BYE/, 4000);
    assert.match(out, /^\* BYE/m);
  });

  it('closes a client that never starts the TLS handshake on the implicit-TLS port at the deadline, without an error', async () => {
    const c = await LineClient.connect(env.proxy.port('imap', 'implicit'));
    const t0 = Date.now();
    for (let i = 0; i < 80 && !c.isClosed; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(c.isClosed, 'closed');
    assert.ok(Date.now() - t0 < 3500, `closed after ${Date.now() - t0} ms`);
    assert.deepEqual(env.proxy.logs.filter((l) => (l['level'] as number) >= 50).map((l) => l['msg']), []);
  });

  it('survives garbage bytes and binary junk before login', async () => {
    const { c } = await greet(port);
    c.write(Buffer.from([0, 1, 2, 255, 254, 13, 10]));
    c.write('\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    const { c: c2, greeting } = await greet(port);
    assert.match(greeting, /^\* OK/);
    c.close(); c2.close();
  });
});
