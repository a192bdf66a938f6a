// Proves trace on demand on a real child mailproxy with workers: 2 in front of slapd + Dovecot: `mailproxy trace USER`
// reaches every worker without a restart; that user's IMAP and POP3 sessions are logged in full detail (pre-login
// dialogue, backend login, first KiB after login) with every credential redacted, and so is their SMTP submission
// session; other users are not; it turns off.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { worldRawConfig } from './proxy-fixture.js';
import { adminGet, startChildProxy, type ChildProxy, type LogLine } from './child-proxy.js';
import { b64 } from './imap-helpers.js';
import { sendAndQuit, smtpReply as reply } from './smtp-helpers.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

function cli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 40_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }));
  });
}

describe('trace on demand (child mailproxy, workers: 2)', function () {
  this.timeout(120_000);
  let world: World;
  let proxy: ChildProxy;
  let file: string;
  let imap = 0;
  let pop3 = 0;
  let submission = 0;

  before(async () => {
    world = await startWorld();
    try {
      const raw = worldRawConfig(world, (c) => {
        c['workers'] = 2;
        c['log'] = { level: 'info' };
        c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }, { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'none' }, { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'none' }];
        c['smtp'] = { requireTlsForAuth: false, authFailureDelayMs: 0, authFailureMaxDelayMs: 0 };
        c['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      });
      proxy = await startChildProxy(world, raw, { name: 'trace', timeoutMs: 60_000 });
      imap = proxy.port('imap', 'none');
      pop3 = proxy.port('pop3', 'none');
      submission = proxy.port('submission', 'none');
      file = join(world.dir, 'trace-cli.yaml');
      writeFileSync(file, stringify(worldRawConfig(world, (c) => { c['admin'] = { enabled: true, address: '127.0.0.1', port: proxy.adminPort }; })));
    } catch (e) { await proxy?.stop(); await world.stop(); throw e; }
  });
  after(async () => { await proxy?.stop(); await world?.stop(); });

  const traceLines = (from: number, conn?: string) => proxy.logs.slice(from).filter((l) => l['trace'] === true && l.msg === 'trace' && (!conn || l['conn'] === conn));
  const render = (ls: LogLine[]) => ls.map((l) => `${String(l['dir'])}: ${String(l['line'])}`);

  async function imapSession(user: 'alice' | 'bob', how: 'login' | 'authenticate'): Promise<void> {
    const u = world.users[user];
    const c = await LineClient.connect(imap);
    try {
      await c.readLine();
      await c.command('a0', 'CAPABILITY');
      if (how === 'login') assert.match(await c.command('a1', `LOGIN ${u.uid} ${u.password}`), /^a1 OK/m);
      else assert.match(await c.command('a1', `AUTHENTICATE PLAIN ${b64(`\0${u.uid}\0${u.password}`)}`), /^a1 OK/m);
      assert.match(await c.command('a2', 'SELECT INBOX'), /^a2 OK/m);
      await c.command('a3', 'LOGOUT');
    } finally { c.close(); }
  }

  it('`mailproxy trace alice` reaches both workers; alice\'s IMAP session is logged in full, redacted; bob\'s is not', async () => {
    const r = await cli(['trace', world.users.alice.uid, '-c', file, '--minutes', '5']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /tracing alice until \S+ in 2 process\(es\)/);
    const list = JSON.parse((await adminGet(proxy.adminPort!, '/trace')).body) as { traces: Array<{ user: string }> };
    assert.deepEqual(list.traces.map((t) => t.user), ['alice']);

    const from = proxy.logs.length;
    // Several sessions, so both workers take some (node:cluster hands connections round-robin).
    for (let i = 0; i < 4; i++) await imapSession('alice', i % 2 ? 'authenticate' : 'login');
    await imapSession('bob', 'login');
    await proxy.waitForLog((l) => l.msg === 'session' && l['user'] === 'bob', 10_000, from);
    const matched = proxy.logs.slice(from).filter((l) => l.msg === 'trace: session matched');
    assert.equal(matched.length, 4);
    assert.equal(new Set(matched.map((l) => l.pid)).size, 2, 'both workers traced');
    const conn = matched[0]!['conn'] as string;
    const lines = render(traceLines(from, conn));
    assert.match(lines[0]!, /^proxy: \* OK/);
    assert.ok(lines.includes('client: a0 CAPABILITY'), lines.join('\n'));
    assert.ok(lines.includes('client: a1 LOGIN alice [redacted]'), lines.join('\n'));
    assert.ok(lines.some((l) => /^to-backend: \S+ LOGIN \{\d+\+?\} \[redacted\]$/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('from-backend: ') && /OK/.test(l)), lines.join('\n'));
    assert.ok(lines.includes('client: a2 SELECT INBOX'), lines.join('\n'));
    assert.ok(lines.some((l) => /^backend: \* \d+ EXISTS/.test(l)), lines.join('\n'));
    const auth = render(traceLines(from, matched[1]!['conn'] as string));
    assert.ok(auth.includes('client: a1 AUTHENTICATE PLAIN [redacted]'), auth.join('\n'));
    // Nothing for bob; no password anywhere in any log line.
    assert.equal(proxy.logs.slice(from).filter((l) => l['trace'] === true && l['traced'] === 'bob').length, 0);
    const text = JSON.stringify(proxy.logs.slice(from));
    for (const secret of [world.users.alice.password, world.users.bob.password, b64(`\0alice\0${world.users.alice.password}`)]) assert.ok(!text.includes(secret), `a credential reached the log: ${secret}`);
  });

  it('the same trace covers alice\'s SMTP submission session (AUTH redacted, backend login, message); not bob\'s', async () => {
    const from = proxy.logs.length;
    for (const user of ['alice', 'bob'] as const) {
      const u = world.users[user];
      const c = await LineClient.connect(submission);
      try {
        await reply(c);
        c.send('EHLO client.example');
        await reply(c);
        c.send(`AUTH PLAIN ${b64(`\0${u.uid}\0${u.password}`)}`);
        assert.match(await reply(c), /^235 /m);
        await sendAndQuit(c, u.mail, 'someone@elsewhere.example', `Subject: trace ${user}\r\n\r\nhello`);
      } finally { c.close(); }
    }
    await proxy.waitForLog((l) => l.msg === 'trace' && l['protocol'] === 'submission' && l['line'] === 'QUIT', 10_000, from);
    const lines = render(traceLines(from).filter((l) => l['protocol'] === 'submission'));
    for (const want of ['client: EHLO client.example', 'client: AUTH PLAIN [redacted]', 'to-backend: AUTH PLAIN [redacted]', 'client: Subject: trace alice', 'client: QUIT']) {
      assert.ok(lines.includes(want), `${want}\n${lines.join('\n')}`);
    }
    assert.ok(lines.some((l) => /^from-backend: 235 /.test(l)), lines.join('\n'));
    assert.ok(!lines.includes('client: Subject: trace bob'), 'bob\'s session is not traced');
    const text = JSON.stringify(proxy.logs.slice(from));
    for (const secret of [world.users.alice.password, world.users.bob.password, b64(`\0alice\0${world.users.alice.password}`)]) assert.ok(!text.includes(secret), `a credential reached the log: ${secret}`);
  });

  it('POP3: USER is shown, PASS redacted; then the trace turns itself off and new sessions are not traced', async () => {
    const r = await cli(['trace', 'alice', '-c', file, '--minutes', '0.05']);
    assert.equal(r.code, 0, r.out);
    const from = proxy.logs.length;
    const u = world.users.alice;
    const p = await LineClient.connect(pop3);
    try {
      await p.readLine();
      p.send(`USER ${u.uid}`);
      assert.match(await p.readLine(), /^\+OK/);
      p.send(`PASS ${u.password}`);
      assert.match(await p.readLine(), /^\+OK/);
      p.send('STAT');
      assert.match(await p.readLine(), /^\+OK/);
      p.send('QUIT');
      await p.readLine();
    } finally { p.close(); }
    await proxy.waitForLog((l) => l.msg === 'trace' && l['dir'] === 'client' && l['line'] === 'STAT', 10_000, from);
    const lines = render(traceLines(from));
    assert.ok(lines.includes('client: USER alice'), lines.join('\n'));
    assert.ok(lines.includes('client: PASS [redacted]'), lines.join('\n'));
    assert.ok(!JSON.stringify(proxy.logs.slice(from)).includes(u.password));
    // 0.05 minutes = 3 s: the primary logs the end, the list empties, a new session is not traced.
    await proxy.waitForLog((l) => l.msg === 'trace ended' && l['traced'] === 'alice', 15_000, from);
    assert.deepEqual((JSON.parse((await adminGet(proxy.adminPort!, '/trace')).body) as { traces: unknown[] }).traces, []);
    const after = proxy.logs.length;
    await imapSession('alice', 'login');
    await proxy.waitForLog((l) => l.msg === 'session' && l['user'] === 'alice', 10_000, after);
    assert.equal(proxy.logs.slice(after).filter((l) => l['trace'] === true).length, 0);
  });
});
