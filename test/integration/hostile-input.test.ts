// Proves that hostile clients on every listener (IMAP, POP3, submission, inbound SMTP) get protocol errors or a close, never crash the
// process or leak sessions, and that normal logins still work afterwards. Must not test individual answers (protocol tests do).
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { withWorldAndProxy } from './proxy-fixture.js';
import { greet } from './imap-helpers.js';
import { LineClient } from './harness/line-client.js';
import { sessionsActive } from '../../src/metrics.js';

/** Deterministic PRNG (mulberry32) so a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAGMENTS = [
  'a LOGIN ', '{', '}', '{99999999}', '{5+}', '\r\n', '\n', '"', '\\', '*', '\0', 'AUTHENTICATE PLAIN ', 'STARTTLS', 'STLS', 'USER ', 'PASS ',
  'AUTH PLAIN ', 'AUTH LOGIN', 'EHLO x', 'MAIL FROM:<', 'RCPT TO:<', 'DATA', '.', 'XCLIENT ADDR=1.2.3.4', 'ID (', '(', ')', 'é', '\xff\xfe',
  '=', 'AGFsaWNlAHg=', 'CAPA', 'CAPABILITY', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2', 'BDAT 10 LAST', 'QUIT', 'LOGOUT',
];

function junk(r: () => number, n: number): Buffer {
  const parts: Buffer[] = [];
  let len = 0;
  while (len < n) {
    const b = r() < 0.5 ? Buffer.from(FRAGMENTS[Math.floor(r() * FRAGMENTS.length)]!, 'latin1') : Buffer.from(Array.from({ length: 1 + Math.floor(r() * 40) }, () => Math.floor(r() * 256)));
    parts.push(b); len += b.length;
  }
  return Buffer.concat(parts);
}

function blast(port: number, data: Buffer, closeAfterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const s: Socket = connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    s.once('connect', () => {
      // Write in random-sized pieces, then go away (sometimes without reading the answer).
      let off = 0;
      const step = () => {
        if (off >= data.length || s.destroyed) return;
        const n = 1 + (off % 977);
        s.write(data.subarray(off, off + n));
        off += n;
        setImmediate(step);
      };
      step();
      setTimeout(() => { s.destroy(); resolve(); }, closeAfterMs);
    });
    s.once('close', () => resolve());
  });
}

describe('hostile input on every listener', function () {
  this.timeout(90_000);
  // The gauge is process-wide: sessions other test files' proxies still hold are the baseline, not this file's leak.
  const key = (l: object) => JSON.stringify(Object.entries(l).sort());
  let baseline = new Map<string, number>();
  before(async () => { baseline = new Map((await sessionsActive.get()).values.map((v) => [key(v.labels), v.value])); });
  let ports: number[];
  const env = withWorldAndProxy((raw) => {
    (raw['listeners'] as unknown[]).push(
      { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'starttls' },
    );
    raw['imap'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 50, authFailureMaxDelayMs: 50, preAuthDeadlineMs: 3000 } };
    raw['pop3'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 50, authFailureMaxDelayMs: 50, preAuthDeadlineMs: 3000 } };
    raw['smtp'] = { requireTlsForAuth: false, authFailureDelayMs: 50, authFailureMaxDelayMs: 50, commandTimeoutMs: 3000 };
    raw['log'] = { level: 'warn' };
  }, {
    onReady: (_world, proxy) => {
      ports = [proxy.port('imap', 'starttls'), proxy.port('pop3', 'starttls'), proxy.port('submission', 'starttls'), proxy.port('smtp', 'starttls'), proxy.port('imap', 'implicit'), proxy.port('pop3', 'implicit')];
    },
  });

  it('survives 240 connections of seeded random protocol fragments and bytes', async () => {
    const r = rng(20261123);
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < 240; i++) jobs.push(blast(ports[i % ports.length]!, junk(r, 200 + Math.floor(r() * 20_000)), 300 + Math.floor(r() * 700)));
    await Promise.all(jobs);
  });

  it('survives a 4 MiB line without a line ending on each listener', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 0x41);
    await Promise.all(ports.slice(0, 4).map((p) => blast(p, big, 1500)));
  });

  it('survives 20 clients that connect and send nothing, and one that sends a byte every 100 ms', async () => {
    const idle = await Promise.all(Array.from({ length: 20 }, (_, i) => LineClient.connect(ports[i % 4]!)));
    const slow = await LineClient.connect(ports[0]!);
    const timer = setInterval(() => { try { slow.write('a'); } catch { /* closed */ } }, 100);
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(timer);
    for (const c of [...idle, slow]) c.close();
  });

  it('still logs users in on every protocol afterwards', async () => {
    const { c } = await greet(ports[0]!);
    assert.match(await c.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    c.close();
    const p = await LineClient.connect(ports[1]!);
    assert.match(await p.readLine(), /^\+OK/);
    p.send('USER bob'); assert.match(await p.readLine(), /^\+OK/);
    p.send(`PASS ${env.world.users.bob.password}`); assert.match(await p.readLine(), /^\+OK/);
    p.close();
    const s = await LineClient.connect(ports[3]!);
    assert.match(await s.readLine(), /^220/);
    s.send('EHLO tester'); await s.readUntil(/^250 /);
    s.send('MAIL FROM:<x@example.org>'); assert.match(await s.readLine(), /^250/);
    s.send('RCPT TO:<bob@example.test>'); assert.match(await s.readLine(), /^250/);
    s.close();
  });

  it('leaks no sessions: every hostile connection is gone from the registry', async () => {
    for (let i = 0; i < 80 && env.proxy.instance.sessions.size > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(env.proxy.instance.sessions.size, 0, JSON.stringify(env.proxy.instance.sessions.list().map((s) => s.info)).slice(0, 500));
    // The gauge dashboards read must come back to zero too (compared with what it showed before this file started).
    const gauge = await sessionsActive.get();
    const open = gauge.values.filter((v) => v.value !== (baseline.get(key(v.labels)) ?? 0));
    assert.deepEqual(open, [], JSON.stringify(open));
  });

  it('logged no internal error', () => {
    const bad = env.proxy.logs.filter((l) => (l['level'] as number) >= 50);
    assert.deepEqual(bad.map((l) => l['msg']), []);
  });
});
