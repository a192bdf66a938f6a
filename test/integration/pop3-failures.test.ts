// Proves the POP3 failure answers against real slapd + Dovecot: bad credentials, no host, dead backend, commands before login, limits.
// Must not test successful routing (pop3-login tests do).
import assert from 'node:assert/strict';
import { startProxy, withWorldAndProxy, worldConfig } from './proxy-fixture.js';
import { b64, cmd, greet, userPass } from './pop3-helpers.js';

const AUTH_FAILED = '-ERR [AUTH] Authentication failed';

describe('POP3 failure answers (real slapd + Dovecot)', function () {
  this.timeout(30_000);
  let port: number;
  const env = withWorldAndProxy((raw) => {
    (raw['pop3'] as Record<string, unknown>)['limits'] = { authFailureDelayMs: 400, authFailureMaxDelayMs: 400, maxBadCommands: 3, maxAuthAttempts: 2, maxLineBytes: 1024, preAuthDeadlineMs: 1500 };
  }, { onReady: (_world, proxy) => { port = proxy.port('pop3', 'starttls'); } });

  async function passReply(user: string, password: string): Promise<{ reply: string; ms: number }> {
    const { c } = await greet(port);
    assert.match(await cmd(c, `USER ${user}`), /^\+OK/);
    const t0 = Date.now();
    const reply = await cmd(c, `PASS ${password}`);
    const ms = Date.now() - t0;
    c.close();
    return { reply, ms };
  }

  it('answers a wrong password and an unknown user identically (USER/PASS and AUTH PLAIN), after the failure delay', async () => {
    const wrong = await passReply('alice', 'not-her-password');
    const unknown = await passReply('nobody-here', 'whatever');
    assert.equal(wrong.reply, AUTH_FAILED);
    assert.equal(unknown.reply, wrong.reply);
    assert.ok(wrong.ms >= 380 && unknown.ms >= 380, `delays ${wrong.ms} / ${unknown.ms}`);
    for (const [u, p] of [['alice', 'nope'], ['nobody-here', 'nope']]) {
      const { c } = await greet(port);
      assert.equal(await cmd(c, `AUTH PLAIN ${b64(`\0${u}\0${p}`)}`), AUTH_FAILED);
      c.close();
    }
  });

  it('refuses an empty password', async () => {
    const { c } = await greet(port);
    assert.match(await cmd(c, 'USER alice'), /^\+OK/);
    assert.match(await cmd(c, 'PASS '), /^-ERR/);
    c.close();
    const { c: c2 } = await greet(port);
    assert.equal(await cmd(c2, `AUTH PLAIN ${b64('\0alice\0')}`), AUTH_FAILED);
    c2.close();
  });

  it('lets the client retry after a failure, then closes at the auth-attempt limit', async () => {
    const { c } = await greet(port);
    assert.equal(await userPass(c, 'alice', 'wrong-1'), AUTH_FAILED);
    assert.equal(await userPass(c, 'alice', 'wrong-2'), AUTH_FAILED);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.isClosed, 'closed after maxAuthAttempts failures');

    const { c: c2 } = await greet(port);
    assert.equal(await userPass(c2, 'alice', 'wrong-1'), AUTH_FAILED);
    assert.match(await userPass(c2, 'alice', env.world.users.alice.password), /^\+OK/);
    c2.close();
  });

  it('keeps pipelined commands across a failed login: the retry and the first post-login command run in order', async () => {
    const { c } = await greet(port);
    c.write(`USER alice\r\nPASS wrong-0\r\nUSER alice\r\nPASS ${env.world.users.alice.password}\r\nSTAT\r\n`);
    assert.equal(await c.readLine(), '+OK');
    assert.equal(await c.readLine(), AUTH_FAILED);
    assert.equal(await c.readLine(), '+OK');
    assert.match(await c.readLine(), /^\+OK Logged in/);
    assert.match(await c.readLine(), /^\+OK \d+ \d+$/);
    c.close();
  });

  it('answers with its own -ERR [AUTH] text when the backend refuses the login (wrong master password)', async () => {
    const m = env.world.masterUser;
    const p2 = await startProxy(worldConfig(env.world, (raw) => { raw['backendLogin'] = { mode: 'master', masterUser: m.name, masterPassword: 'not-the-master-password', masterSeparator: m.separator }; }));
    try {
      const { c } = await greet(p2.port('pop3', 'starttls'));
      assert.equal(await userPass(c, 'alice', env.world.users.alice.password), AUTH_FAILED);
      c.close();
      const failed = p2.logs.find((l) => l['msg'] === 'login failed');
      assert.equal(failed?.['code'], 'BACKEND_AUTH_FAILED');
      assert.ok(!p2.logText().includes('not-the-master-password'));
    } finally { await p2.stop(); }
  });

  it('gives -ERR [SYS/TEMP] for an account without mailHost (carol)', async () => {
    const r = await passReply('carol', env.world.users.carol.password);
    assert.match(r.reply, /^-ERR \[SYS\/TEMP\]/);
    assert.ok(r.ms < 380, `no failure delay for a temporary error (${r.ms} ms)`);
  });

  it('gives -ERR [SYS/TEMP], fast, when the account\'s backend is unreachable (dave)', async () => {
    const r = await passReply('dave', env.world.users.dave.password);
    assert.match(r.reply, /^-ERR \[SYS\/TEMP\]/);
    assert.ok(r.ms < 2000, `took ${r.ms} ms`);
  });

  it('treats LDAP filter metacharacters in the user name as plain characters', async () => {
    for (const name of ['*', 'al*', 'alice)(uid=*', '*)(|(uid=*', '(uid=alice)']) {
      const { reply } = await passReply(name, env.world.users.alice.password);
      assert.equal(reply, AUTH_FAILED, name);
    }
  });

  it('rejects transaction commands (STAT, NOOP, RETR) and PASS without USER before login', async () => {
    const { c } = await greet(port);
    assert.match(await cmd(c, 'NOOP'), /^-ERR/);
    assert.match(await cmd(c, 'PASS whatever'), /^-ERR/);
    c.close();
    const { c: c2 } = await greet(port);
    assert.match(await cmd(c2, 'STAT'), /^-ERR/);
    assert.match(await cmd(c2, 'RETR 1'), /^-ERR/);
    c2.close();
  });

  it('closes after too many bad commands', async () => {
    const { c } = await greet(port);
    assert.match(await cmd(c, 'FROBNICATE'), /^-ERR/);
    assert.match(await cmd(c, 'STAT'), /^-ERR/);
    assert.equal(await cmd(c, 'XYZZY'), '-ERR Too many invalid commands');
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.isClosed);
  });

  it('refuses an over-long line and does not run what followed it on that line', async () => {
    const { c } = await greet(port);
    c.send(`USER ${'x'.repeat(2000)} CAPA`);
    assert.equal(await c.readLine(), '-ERR Line too long');
    assert.equal(await c.anyDataWithin(200), false);
    assert.match(await cmd(c, 'USER alice'), /^\+OK/);
    c.close();
  });

  it('closes an idle unauthenticated connection at the pre-login deadline', async () => {
    const { c } = await greet(port);
    assert.equal(await c.readLine(4000), '-ERR Disconnected for inactivity');
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.isClosed);
  });

  it('answers QUIT before login with +OK and closes', async () => {
    const { c } = await greet(port);
    assert.match(await cmd(c, 'QUIT'), /^\+OK/);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.isClosed);
  });

  it('survives garbage bytes before login and keeps serving others', async () => {
    const { c } = await greet(port);
    c.write(Buffer.from([0, 1, 2, 255, 254, 13, 10]));
    c.write('\r\n');
    const { c: c2, greeting } = await greet(port);
    assert.match(greeting, /^\+OK/);
    c.close(); c2.close();
  });

  it('never writes a password into its logs', () => {
    const text = env.proxy.logText();
    assert.ok(text.length > 0);
    for (const u of Object.values(env.world.users)) assert.ok(!text.includes(u.password), `password of ${u.uid} in logs`);
    for (const p of ['not-her-password', 'wrong-1', 'wrong-2']) assert.ok(!text.includes(p), p);
  });
});
