// Proves the integration test world itself: real slapd and two real Dovecot backends behave as the harness promises.
// Must not test the proxy; every connection here goes straight to a fixture.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Client } from 'ldapts';
import nodemailer from 'nodemailer';
import { requireBinaries } from './harness/binaries.js';
import { reapStaleWorlds } from './harness/stale-worlds.js';
import { LineClient } from './harness/line-client.js';
import { markerMessage } from './harness/lmtp.js';
import { startWorld, type World } from './harness/world.js';

async function imapLogin(port: number, user: string, password: string): Promise<LineClient> {
  const c = await LineClient.connect(port);
  assert.match(await c.readLine(), /^\* OK/);
  const reply = await c.command('a', `LOGIN ${user} ${password}`);
  assert.match(reply, /^a OK/m, reply);
  return c;
}

async function messageCount(port: number, user: string, password: string): Promise<number> {
  const c = await imapLogin(port, user, password);
  try {
    const status = await c.command('s', 'STATUS INBOX (MESSAGES)');
    const m = /MESSAGES (\d+)/.exec(status);
    assert.ok(m, status);
    return Number(m[1]);
  } finally {
    c.close();
  }
}

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie awaiting its parent counts as gone.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Polls until none of `pids` is alive or `timeoutMs` passed (the caller asserts which are left). */
async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(pidAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** Source for `node --input-type=module -e`: start a world, print one JSON line {dir, pids} (fixture masters and their descendants), then run `then`. */
function worldChildScript(then: string): string {
  const worldModule = new URL('./harness/world.js', import.meta.url).href;
  const processesModule = new URL('./harness/processes.js', import.meta.url).href;
  return `
      const { startWorld } = await import(${JSON.stringify(worldModule)});
      const { descendantsOf } = await import(${JSON.stringify(processesModule)});
      const w = await startWorld();
      const masters = [w.ldap.pid(), w.backends.a.pid(), w.backends.b.pid()];
      const pids = masters.flatMap((p) => [p, ...descendantsOf(p)]);
      console.log(JSON.stringify({ dir: w.dir, pids, masters }));
      ${then}`;
}

describe('integration test world (real slapd + Dovecot)', function () {
  let world: World;

  before(async function () {
    this.timeout(20000);
    world = await startWorld();
  });

  after(async function () {
    this.timeout(20000);
    await world?.stop();
  });

  it('starts quickly', function () {
    assert.ok(world.startupMs < 3000, `startup took ${world.startupMs} ms`);
  });

  it('names the Debian package when a binary is missing', function () {
    assert.throws(
      () => requireBinaries([{ name: 'slapd-not-here', pkg: 'slapd', executable: true }], '/nonexistent'),
      /slapd-not-here \(Debian package slapd\).*apt-get/,
    );
  });

  it('lets the LDAP service account search alice and see her mailHost', async function () {
    const client = new Client({ url: world.ldap.url, timeout: 5000, connectTimeout: 5000 });
    try {
      await client.bind(world.ldap.bindDN, world.ldap.bindPassword);
      const { searchEntries } = await client.search(world.ldap.baseDN, {
        scope: 'sub',
        filter: '(uid=alice)',
        attributes: ['mail', 'mailHost'],
      });
      assert.equal(searchEntries.length, 1);
      assert.equal(searchEntries[0]!.dn, world.users.alice.dn);
      assert.equal(searchEntries[0]!['mailHost'], 'backend-a');
      assert.equal(searchEntries[0]!['mail'], 'alice@example.test');
      const carol = await client.search(world.ldap.baseDN, { filter: '(uid=carol)', attributes: ['mailHost'] });
      assert.deepEqual([carol.searchEntries[0]!['mailHost'] ?? []].flat(), []);
    } finally {
      await client.unbind();
    }
  });

  it('verifies user passwords (including erin\'s) by LDAP simple bind', async function () {
    for (const u of [world.users.alice, world.users.erin]) {
      const client = new Client({ url: world.ldap.url, timeout: 5000, connectTimeout: 5000 });
      await client.bind(u.dn, u.password);
      await client.unbind();
    }
    const bad = new Client({ url: world.ldap.url, timeout: 5000, connectTimeout: 5000 });
    await assert.rejects(bad.bind(world.users.alice.dn, 'wrong'), /InvalidCredentials/);
  });

  it('logs alice into backend-a over plain IMAP and shows her marker', async function () {
    const c = await imapLogin(world.backends.a.ports.imap, 'alice', 'alice-secret');
    try {
      assert.match(await c.command('b', 'SELECT INBOX'), /^\* 1 EXISTS/m);
      const fetched = await c.command('c', 'FETCH 1 (BODY.PEEK[HEADER.FIELDS (X-Test-Backend SUBJECT)])');
      assert.match(fetched, /X-Test-Backend: backend-a/);
      assert.match(fetched, /Subject: marker backend-a/);
    } finally {
      c.close();
    }
  });

  it('keeps bob\'s marker only on backend-b', async function () {
    const onB = await imapLogin(world.backends.b.ports.imap, 'bob', 'bob-secret');
    try {
      assert.match(await onB.command('b', 'SELECT INBOX'), /^\* 1 EXISTS/m);
      assert.match(await onB.command('c', 'FETCH 1 (BODY.PEEK[HEADER.FIELDS (X-Test-Backend)])'), /X-Test-Backend: backend-b/);
    } finally {
      onB.close();
    }
    assert.equal(await messageCount(world.backends.a.ports.imap, 'bob', 'bob-secret'), 0);
  });

  it('accepts erin\'s password with quotes, backslash, spaces and UTF-8 via IMAP literals', async function () {
    const c = await LineClient.connect(world.backends.a.ports.imap);
    try {
      await c.readLine();
      const user = Buffer.from('erin');
      const pass = Buffer.from(world.users.erin.password, 'utf8');
      c.send(`a LOGIN {${user.length}}`);
      assert.match(await c.readLine(), /^\+/);
      c.write(Buffer.concat([user, Buffer.from(` {${pass.length}}\r\n`)]));
      assert.match(await c.readLine(), /^\+/);
      c.write(Buffer.concat([pass, Buffer.from('\r\n')]));
      assert.match(await c.readUntil(/^a (OK|NO|BAD)/), /^a OK/m);
      assert.match(await c.command('b', 'SELECT INBOX'), /^\* 1 EXISTS/m);
    } finally {
      c.close();
    }
  });

  it('logs in with the master user as alice*proxymaster', async function () {
    const m = world.masterUser;
    const c = await imapLogin(world.backends.a.ports.imap, `alice${m.separator}${m.name}`, m.password);
    c.close();
  });

  it('serves IMAPS and POP3S with the world certificate (verified against tls.caPath)', async function () {
    const ca = readFileSync(world.tls.caPath);
    const imaps = await LineClient.connect(world.backends.a.ports.imaps, { tls: true, ca });
    assert.match(await imaps.readLine(), /^\* OK/);
    imaps.close();
    const pop3s = await LineClient.connect(world.backends.b.ports.pop3s, { tls: true, ca });
    assert.match(await pop3s.readLine(), /^\+OK/);
    pop3s.close();
  });

  it('logs bob into backend-b over POP3 USER/PASS', async function () {
    const c = await LineClient.connect(world.backends.b.ports.pop3);
    try {
      assert.match(await c.readLine(), /^\+OK/);
      c.send('USER bob');
      assert.match(await c.readLine(), /^\+OK/);
      c.send('PASS bob-secret');
      assert.match(await c.readLine(), /^\+OK/);
      c.send('STAT');
      assert.match(await c.readLine(), /^\+OK 1 \d+/);
      c.send('QUIT');
      assert.match(await c.readLine(), /^\+OK/);
    } finally {
      c.close();
    }
  });

  it('delivers over LMTP to bare uid and uid@domain recipients', async function () {
    const a = world.backends.a;
    const before = await messageCount(a.ports.imap, 'carol', 'carol-secret');
    await a.deliver('carol', markerMessage('backend-a', 'carol@example.test', 'lmtp one'));
    await a.deliver('carol@example.test', markerMessage('backend-a', 'carol@example.test', 'lmtp two'));
    assert.equal(await messageCount(a.ports.imap, 'carol', 'carol-secret'), before + 2);
  });

  it('relays alice\'s submission (STARTTLS + AUTH PLAIN) to the sink', async function () {
    const before = world.sink.messages.length;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: world.backends.a.ports.submission,
      secure: false,
      requireTLS: true,
      auth: { user: 'alice', pass: 'alice-secret', method: 'PLAIN' },
      tls: { rejectUnauthorized: false },
    });
    await transport.sendMail({
      from: 'alice@example.test',
      to: 'someone@elsewhere.test',
      subject: 'via submission',
      text: 'hello sink',
    });
    transport.close();
    await world.sink.waitFor(before + 1, 5000);
    const msg = world.sink.messages[before]!;
    assert.equal(msg.from, 'alice@example.test');
    assert.deepEqual(msg.to, ['someone@elsewhere.test']);
    assert.match(msg.raw.toString('utf8'), /Subject: via submission/);
  });

  it('logs the forwarded client address (IMAP ID from a trusted network) as rip=', async function () {
    const c = await LineClient.connect(world.backends.b.ports.imap);
    await c.readLine();
    await c.command('i', 'ID ("x-originating-ip" "203.0.113.9" "x-originating-port" "40001")');
    assert.match(await c.command('a', 'LOGIN bob bob-secret'), /^a OK/m);
    c.close();
    const log = await world.backends.b.readLog();
    assert.match(log, /imap-login: Info: Login: user=<bob>, method=PLAIN, rip=203\.0\.113\.9, lip=127\.0\.0\.1/);
  });

  it('has a dead port that refuses connections', async function () {
    assert.equal(await connectRefused(world.deadPort), true);
  });

  it('stops and restarts backend-a on the same ports', async function () {
    this.timeout(15000);
    const a = world.backends.a;
    await a.stop();
    assert.equal(await connectRefused(a.ports.imap), true);
    assert.equal(await connectRefused(a.ports.lmtp), true);
    await a.start();
    const c = await imapLogin(a.ports.imap, 'alice', 'alice-secret');
    c.close();
  });

  it('pauses backend-b: TCP connects but no greeting; resume delivers it', async function () {
    this.timeout(15000);
    const b = world.backends.b;
    b.pause();
    let c: LineClient | undefined;
    try {
      c = await LineClient.connect(b.ports.imap);
      assert.equal(await c.anyDataWithin(500), false, 'greeting arrived while paused');
    } finally {
      b.resume();
    }
    assert.match(await c.readLine(5000), /^\* OK/);
    c.close();
  });

  it('pauses and stops LDAP', async function () {
    this.timeout(15000);
    const ldap = world.ldap;
    ldap.pause();
    try {
      const client = new Client({ url: ldap.url, timeout: 300, connectTimeout: 300 });
      await assert.rejects(client.bind(ldap.bindDN, ldap.bindPassword));
      await client.unbind().catch(() => undefined);
    } finally {
      ldap.resume();
    }
    await ldap.stop();
    assert.equal(await connectRefused(ldap.port), true);
    await ldap.start();
    const client = new Client({ url: ldap.url, timeout: 5000, connectTimeout: 5000 });
    await client.bind(ldap.bindDN, ldap.bindPassword);
    await client.unbind();
  });
});

describe('integration test world lifecycle', function () {
  it('kills every fixture process and removes its folder when the test process exits without stop()', async function () {
    this.timeout(20000);
    const script = worldChildScript('process.exit(3);');
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 15000 }, (err, stdout, stderr) => {
        if (err !== null && err.code !== 3) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
    const { dir, pids } = JSON.parse(out) as { dir: string; pids: number[] };
    assert.ok(pids.length >= 6, `expected slapd and two Dovecot trees, got ${pids.length} pids`);
    await waitGone(pids, 3000);
    assert.deepEqual(pids.filter(pidAlive), []);
    assert.equal(existsSync(dir), false);
  });

  it('reaps fixtures orphaned by a SIGKILLed test process on the next start', async function () {
    this.timeout(20000);
    const script = worldChildScript('setInterval(() => {}, 1000);');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
      });
      child.once('exit', (code) => reject(new Error(`child exited ${code} before starting a world`)));
    });
    const { dir, pids, masters } = JSON.parse(line) as { dir: string; pids: number[]; masters: number[] };
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    try {
      // The masters: a Dovecot child (a login or config process) may end on its own at any time.
      assert.ok(masters.every(pidAlive), 'fixture masters should outlive a SIGKILLed owner');
      reapStaleWorlds();
      await waitGone(pids, 3000);
      assert.deepEqual(pids.filter(pidAlive), []);
      assert.equal(existsSync(dir), false);
    } finally {
      for (const p of pids.filter(pidAlive)) process.kill(p, 'SIGKILL');
    }
  });

  it('starts with dovecotPerfTuning and serves many concurrent logins', async function () {
    this.timeout(30000);
    const w = await startWorld({ dovecotPerfTuning: true });
    const clients: LineClient[] = [];
    try {
      const config = readFileSync(w.backends.a.configPath, 'utf8');
      assert.match(config, /service_count = 0/);
      for (let i = 0; i < 50; i++) clients.push(await imapLogin(w.backends.a.ports.imap, 'alice', 'alice-secret'));
      assert.doesNotMatch(await w.backends.a.readLog(), /Fatal|Error:/);
    } finally {
      for (const c of clients) c.close();
      await w.stop();
    }
  });
});
