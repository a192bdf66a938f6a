// Proves IMAP login through the proxy against real slapd + Dovecot: routing by mailHost, every login form, client address forwarding.
// Must not test failure answers or TLS (imap-failures / imap-tls tests do).
import assert from 'node:assert/strict';
import { ImapFlow } from 'imapflow';
import { startProxy, withWorldAndProxy, worldConfig } from './proxy-fixture.js';
import { b64, firstMessageHeader, greet, loginLiteral } from './imap-helpers.js';

describe('IMAP login through the proxy (real slapd + Dovecot)', function () {
  this.timeout(30_000);
  let port: number;
  const env = withWorldAndProxy({ onReady: (_world, proxy) => { port = proxy.port('imap', 'starttls'); } });

  it('greets with its own capabilities (SASL-IR, LITERAL+, ID, STARTTLS, AUTH=PLAIN)', async () => {
    const { c, greeting } = await greet(port);
    assert.match(greeting, /^\* OK \[CAPABILITY [^\]]*IMAP4rev1/);
    for (const cap of ['SASL-IR', 'LITERAL+', 'ID', 'STARTTLS', 'AUTH=PLAIN', 'AUTH=LOGIN']) assert.ok(greeting.includes(cap), `${cap} in ${greeting}`);
    c.close();
  });

  it('routes alice to backend-a and bob to backend-b (marker messages exist only on the owner)', async () => {
    for (const [user, backend] of [['alice', 'backend-a'], ['bob', 'backend-b']] as const) {
      const { c } = await greet(port);
      const u = env.world.users[user];
      const r = await c.command('a', `LOGIN ${u.uid} ${u.password}`);
      assert.match(r, /^a OK \[CAPABILITY [^\]]*IMAP4rev1/m, r);
      const h = await firstMessageHeader(c, 'X-Test-Backend');
      assert.match(h, new RegExp(`X-Test-Backend: ${backend}\\r\\n`));
      c.close();
    }
  });

  it('logs in with the mail address as login name (directory maps it to the uid)', async () => {
    const { c } = await greet(port);
    const r = await c.command('a', `LOGIN "${env.world.users.bob.mail}" "${env.world.users.bob.password}"`);
    assert.match(r, /^a OK/m, r);
    assert.match(await firstMessageHeader(c, 'X-Test-Backend'), /backend-b/);
    c.close();
  });

  it('accepts quoted strings with escapes, synchronising literals and LITERAL+ (erin: quotes, backslash, spaces, UTF-8, {5})', async () => {
    const erin = env.world.users.erin;
    // quoted with escapes
    let { c } = await greet(port);
    const quoted = erin.password.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    let r = await c.command('q', `LOGIN erin "${quoted}"`);
    assert.match(r, /^q OK/m, r);
    c.close();
    // synchronising literals
    ({ c } = await greet(port));
    r = await loginLiteral(c, 'l', 'erin', erin.password);
    assert.match(r, /^l OK/m, r);
    c.close();
    // LITERAL+ (RFC 7888): no continuation requests
    ({ c } = await greet(port));
    const p = Buffer.from(erin.password, 'utf8');
    c.write(Buffer.concat([Buffer.from(`n LOGIN {4+}\r\nerin {${p.length}+}\r\n`), p, Buffer.from('\r\n')]));
    r = await c.readUntil(/^n (OK|NO|BAD)/);
    assert.match(r, /^n OK/m, r);
    assert.doesNotMatch(r, /^\+ /m);
    c.close();
  });

  it('AUTHENTICATE PLAIN with SASL-IR, with a continuation, and AUTHENTICATE LOGIN', async () => {
    const a = env.world.users.alice;
    let { c } = await greet(port);
    let r = await c.command('p', `AUTHENTICATE PLAIN ${b64(`\0${a.uid}\0${a.password}`)}`);
    assert.match(r, /^p OK/m, r);
    c.close();

    ({ c } = await greet(port));
    c.send('p2 AUTHENTICATE PLAIN');
    assert.equal(await c.readLine(), '+ ');
    c.send(b64(`${a.uid}\0${a.uid}\0${a.password}`));
    r = await c.readUntil(/^p2 (OK|NO|BAD)/);
    assert.match(r, /^p2 OK/m, r);
    c.close();

    ({ c } = await greet(port));
    c.send('l AUTHENTICATE LOGIN');
    assert.match(await c.readLine(), /^\+ /);
    c.send(b64(a.uid));
    assert.match(await c.readLine(), /^\+ /);
    c.send(b64(a.password));
    r = await c.readUntil(/^l (OK|NO|BAD)/);
    assert.match(r, /^l OK/m, r);
    c.close();
  });

  it('cancels AUTHENTICATE with * and the connection stays usable', async () => {
    const { c } = await greet(port);
    c.send('x AUTHENTICATE PLAIN');
    await c.readLine();
    c.send('*');
    assert.match(await c.readUntil(/^x /), /^x BAD/m);
    const r = await c.command('y', `LOGIN alice ${env.world.users.alice.password}`);
    assert.match(r, /^y OK/m);
    c.close();
  });

  it('runs pipelined commands in order, including the first post-login command', async () => {
    const { c } = await greet(port);
    c.write(`a CAPABILITY\r\nb LOGIN alice ${env.world.users.alice.password}\r\nc SELECT INBOX\r\n`);
    const out = await c.readUntil(/^c (OK|NO|BAD)/);
    assert.match(out, /^a OK/m);
    assert.match(out, /^b OK/m);
    assert.match(out, /^c OK \[READ-WRITE\]/m);
    assert.ok(out.indexOf('a OK') < out.indexOf('b OK') && out.indexOf('b OK') < out.indexOf('c OK'));
    c.close();
  });

  it('forwards the client address and session id to the backend with ID (Dovecot logs rip=)', async () => {
    const { c } = await greet(port, { localAddress: '127.0.0.7' });
    c.send('i ID ("name" "forward-test")');
    await c.readUntil(/^i OK/);
    assert.match(await c.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    await c.command('z', 'LOGOUT');
    c.close();
    let log = '';
    for (let i = 0; i < 40 && !/rip=127\.0\.0\.7/.test(log); i++) { await new Promise((r) => setTimeout(r, 100)); log = await env.world.backends.a.readLog(); }
    assert.match(log, /imap-login: Info: Login: user=<alice>.*rip=127\.0\.0\.7/);
  });

  it('works with a real client library (imapflow) and passes the backend CAPABILITY after login', async () => {
    const client = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user: 'bob', pass: env.world.users.bob.password }, logger: false, tls: { rejectUnauthorized: false } });
    await client.connect();
    const lock = await client.getMailboxLock('INBOX');
    try {
      const msg = await client.fetchOne('1', { headers: ['x-test-backend'] });
      assert.ok(msg);
      assert.match(msg.headers!.toString(), /backend-b/);
    } finally { lock.release(); }
    await client.logout();
  });

  it('logs in as a Dovecot master user when configured (user*master)', async () => {
    const m = env.world.masterUser;
    const p2 = await startProxy(worldConfig(env.world, (raw) => { raw['backendLogin'] = { mode: 'master', masterUser: m.name, masterPassword: m.password, masterSeparator: m.separator }; }));
    try {
      const { c } = await greet(p2.port('imap', 'starttls'));
      const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
      assert.match(r, /^a OK/m, r);
      assert.match(await firstMessageHeader(c, 'X-Test-Backend'), /backend-a/);
      c.close();
    } finally { await p2.stop(); }
  });

  it('routes an account without mailHost (carol) to routing.defaultBackend when one is configured', async () => {
    const p2 = await startProxy(worldConfig(env.world, (raw) => { raw['routing'] = { defaultBackend: 'backend-b' }; }));
    try {
      const { c } = await greet(p2.port('imap', 'starttls'));
      assert.match(await c.command('a', `LOGIN carol ${env.world.users.carol.password}`), /^a OK/m);
      c.close();
      let log = '';
      for (let i = 0; i < 40 && !/Login: user=<carol>/.test(log); i++) { await new Promise((r) => setTimeout(r, 50)); log = await env.world.backends.b.readLog(); }
      assert.match(log, /imap-login: Info: Login: user=<carol>/);
      assert.doesNotMatch(await env.world.backends.a.readLog(), /Login: user=<carol>/);
    } finally { await p2.stop(); }
  });

  it('never writes a password into its logs', () => {
    const text = env.proxy.logText();
    assert.ok(text.length > 0);
    for (const u of Object.values(env.world.users)) assert.ok(!text.includes(u.password), `password of ${u.uid} in logs`);
    assert.ok(!text.includes(b64(`\0alice\0${env.world.users.alice.password}`)));
  });
});
