// Proves POP3 login through the proxy against real slapd + Dovecot: routing by mailHost, USER/PASS, AUTH PLAIN/LOGIN, pipelining, client address forwarding.
// Must not test failure answers or TLS (pop3-failures / pop3-tls tests do).
import assert from 'node:assert/strict';
import { startProxy, withWorldAndProxy, worldConfig } from './proxy-fixture.js';
import { b64, cmd, greet, markerMessages, markers, multi, userPass } from './pop3-helpers.js';

describe('POP3 login through the proxy (real slapd + Dovecot)', function () {
  this.timeout(30_000);
  let port: number;
  const env = withWorldAndProxy({ onReady: (_world, proxy) => { port = proxy.port('pop3', 'starttls'); } });

  it('greets with +OK and lists USER, SASL PLAIN LOGIN, STLS, RESP-CODES, AUTH-RESP-CODE, PIPELINING in CAPA', async () => {
    const { c, greeting } = await greet(port);
    assert.match(greeting, /^\+OK /);
    assert.doesNotMatch(greeting, /<.*@.*>/, 'no APOP timestamp offered');
    const { status, body } = await multi(c, 'CAPA');
    assert.match(status, /^\+OK/);
    const caps = body.split('\r\n').filter((l) => l !== '' && l !== '.');
    for (const cap of ['USER', 'SASL PLAIN LOGIN', 'STLS', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']) assert.ok(caps.includes(cap), `${cap} in ${JSON.stringify(caps)}`);
    assert.equal(await cmd(c, 'QUIT'), '+OK Bye');
    c.close();
  });

  it('routes alice to backend-a and bob to backend-b (marker messages exist only on the owner)', async () => {
    for (const [user, backend] of [['alice', 'backend-a'], ['bob', 'backend-b']] as const) {
      const { c } = await greet(port);
      const r = await userPass(c, user, env.world.users[user].password);
      assert.match(r, /^\+OK/, r);
      const found = await markerMessages(c);
      assert.ok(found.length > 0, `no marker in ${user}'s mailbox`);
      assert.deepEqual([...new Set(found.map((m) => m.backend))], [backend]);
      // RETR of the marker message carries the header too (RETR goes through the relay like TOP).
      const { status, body } = await multi(c, `RETR ${found[0]!.n}`);
      assert.match(status, /^\+OK/);
      assert.match(body, new RegExp(`^X-Test-Backend: ${backend}\\r$`, 'm'));
      assert.match(await cmd(c, 'QUIT'), /^\+OK/);
      c.close();
    }
  });

  it('logs in with the mail address as USER (directory maps it to the uid)', async () => {
    const { c } = await greet(port);
    assert.match(await userPass(c, env.world.users.bob.mail, env.world.users.bob.password), /^\+OK/);
    assert.deepEqual(await markers(c), ['backend-b']);
    c.close();
  });

  it('takes the rest of the line as PASS (erin: spaces, quotes, backslash, UTF-8, {5})', async () => {
    const erin = env.world.users.erin;
    assert.match(erin.password, / /);
    const { c } = await greet(port);
    const r = await userPass(c, 'erin', erin.password);
    assert.match(r, /^\+OK/, r);
    const stat = await cmd(c, 'STAT');
    assert.match(stat, /^\+OK \d+ \d+$/);
    c.close();
  });

  it('AUTH PLAIN with an initial response (erin) and with a continuation (alice)', async () => {
    const erin = env.world.users.erin;
    let { c } = await greet(port);
    let r = await cmd(c, `AUTH PLAIN ${b64(`\0erin\0${erin.password}`)}`);
    assert.match(r, /^\+OK/, r);
    assert.match(await cmd(c, 'STAT'), /^\+OK \d+ \d+$/);
    c.close();

    const a = env.world.users.alice;
    ({ c } = await greet(port));
    assert.equal(await cmd(c, 'AUTH PLAIN'), '+ ');
    r = await cmd(c, b64(`alice\0alice\0${a.password}`));
    assert.match(r, /^\+OK/, r);
    assert.deepEqual(await markers(c), ['backend-a']);
    c.close();
  });

  it('AUTH LOGIN with two continuations (and with the user name as initial response)', async () => {
    const b = env.world.users.bob;
    let { c } = await greet(port);
    assert.equal(await cmd(c, 'AUTH LOGIN'), `+ ${b64('Username:')}`);
    assert.equal(await cmd(c, b64('bob')), `+ ${b64('Password:')}`);
    let r = await cmd(c, b64(b.password));
    assert.match(r, /^\+OK/, r);
    assert.deepEqual(await markers(c), ['backend-b']);
    c.close();

    ({ c } = await greet(port));
    assert.match(await cmd(c, `AUTH LOGIN ${b64('bob')}`), /^\+ /);
    r = await cmd(c, b64(b.password));
    assert.match(r, /^\+OK/, r);
    c.close();
  });

  it('cancels AUTH with * (PLAIN and LOGIN at either step) and the connection stays usable', async () => {
    const { c } = await greet(port);
    assert.equal(await cmd(c, 'AUTH PLAIN'), '+ ');
    assert.match(await cmd(c, '*'), /^-ERR/);
    assert.match(await cmd(c, 'AUTH LOGIN'), /^\+ /);
    assert.match(await cmd(c, '*'), /^-ERR/);
    assert.match(await cmd(c, 'AUTH LOGIN'), /^\+ /);
    assert.match(await cmd(c, b64('alice')), /^\+ /);
    assert.match(await cmd(c, '*'), /^-ERR/);
    assert.match(await userPass(c, 'alice', env.world.users.alice.password), /^\+OK/);
    assert.match(await cmd(c, 'STAT'), /^\+OK/);
    c.close();
  });

  it('accepts lower-case commands and, after login, hands CAPA to the backend (Dovecot\'s list, not the proxy\'s)', async () => {
    const { c } = await greet(port);
    assert.equal(await cmd(c, 'user alice'), '+OK');
    assert.match(await cmd(c, `pass ${env.world.users.alice.password}`), /^\+OK/);
    const { status, body } = await multi(c, 'CAPA');
    assert.match(status, /^\+OK/);
    assert.match(body, /^TOP\r$/m);
    assert.match(body, /^UIDL\r$/m);
    assert.doesNotMatch(body, /IMPLEMENTATION mailproxy/);
    c.close();
  });

  it('lists mechanisms for a bare AUTH', async () => {
    const { c } = await greet(port);
    const { status, body } = await multi(c, 'AUTH');
    assert.match(status, /^\+OK/);
    assert.deepEqual(body.split('\r\n').filter((l) => l !== '' && l !== '.'), ['PLAIN', 'LOGIN']);
    c.close();
  });

  it('runs pipelined USER/PASS/STAT from one write in order, STAT answered by the backend', async () => {
    const { c } = await greet(port);
    c.write(`CAPA\r\nUSER bob\r\nPASS ${env.world.users.bob.password}\r\nSTAT\r\nLIST 1\r\n`);
    assert.match(await c.readLine(), /^\+OK/);
    await c.readUntil(/^\.$/);
    assert.equal(await c.readLine(), '+OK');
    assert.match(await c.readLine(), /^\+OK Logged in/);
    assert.match(await c.readLine(), /^\+OK \d+ \d+$/);
    assert.match(await c.readLine(), /^\+OK 1 \d+$/);
    assert.equal(await c.anyDataWithin(200), false);
    c.close();
  });

  it('forwards the client address and session id to the backend with XCLIENT (Dovecot logs rip=127.0.0.9, session=<conn id>)', async () => {
    const { c } = await greet(port, { localAddress: '127.0.0.9' });
    assert.match(await userPass(c, 'alice', env.world.users.alice.password), /^\+OK/);
    assert.match(await cmd(c, 'QUIT'), /^\+OK/);
    c.close();
    const wanted = /pop3-login: Info: Login: user=<alice>.*rip=127\.0\.0\.9.*session=<([^>]+)>/;
    let log = '';
    for (let i = 0; i < 40 && !wanted.test(log); i++) {
      await new Promise((r) => setTimeout(r, 100));
      log = await env.world.backends.a.readLog();
    }
    const m = wanted.exec(log);
    assert.ok(m, `no pop3-login line with rip=127.0.0.9 in:\n${log}`);
    const conns = env.proxy.logs.filter((l) => l['protocol'] === 'pop3' && l['client'] === '127.0.0.9').map((l) => l['conn']);
    assert.ok(conns.includes(m[1]), `Dovecot session ${m[1]} is one of the proxy's connection ids ${JSON.stringify([...new Set(conns)])}`);
  });

  it('logs in as a Dovecot master user when configured (user*master)', async () => {
    const m = env.world.masterUser;
    const p2 = await startProxy(worldConfig(env.world, (raw) => { raw['backendLogin'] = { mode: 'master', masterUser: m.name, masterPassword: m.password, masterSeparator: m.separator }; }));
    try {
      const { c } = await greet(p2.port('pop3', 'starttls'));
      assert.match(await userPass(c, 'bob', env.world.users.bob.password), /^\+OK/);
      assert.deepEqual(await markers(c), ['backend-b']);
      c.close();
    } finally { await p2.stop(); }
  });

  it('writes one summary record per session with user, backend, bytes and who closed', async () => {
    const { c } = await greet(port);
    assert.match(await userPass(c, 'alice', env.world.users.alice.password), /^\+OK/);
    assert.match(await cmd(c, 'QUIT'), /^\+OK/);
    await new Promise((r) => setTimeout(r, 300));
    c.close();
    const s = env.proxy.logs.filter((l) => l['summary'] === true && l['protocol'] === 'pop3' && l['user'] === 'alice' && l['result'] === 'ok').at(-1);
    assert.ok(s, 'a summary record for alice');
    assert.equal(s['backend'], 'backend-a');
    assert.ok((s['bytesUp'] as number) > 0 && (s['bytesDown'] as number) > 0);
  });

  it('never writes a password into its logs', () => {
    const text = env.proxy.logText();
    assert.ok(text.length > 0);
    for (const u of Object.values(env.world.users)) {
      assert.ok(!text.includes(u.password), `password of ${u.uid} in logs`);
      assert.ok(!text.includes(JSON.stringify(u.password).slice(1, -1)), `JSON-escaped password of ${u.uid} in logs`);
    }
    assert.ok(!text.includes(b64(`\0erin\0${env.world.users.erin.password}`)));
    assert.ok(!text.includes(b64(env.world.users.bob.password)));
  });
});
