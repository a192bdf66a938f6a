// Owns the IMAP benchmark: login rate, 10 MiB FETCH throughput and curl login time through mailproxy vs direct to Dovecot, same run.
// Must not assert anything; it prints figures and ratios (proxy / direct) for the issue notes.
import { spawn, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { randomBytes } from 'node:crypto';
import { startWorld } from '../test/integration/harness/world.js';
import { worldRawConfig } from '../test/integration/proxy-fixture.js';
import { LineClient } from '../test/integration/harness/line-client.js';
import { allocatePorts } from '../test/integration/harness/ports.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOGINS = Number(process.env['BENCH_LOGINS'] ?? 400);
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 8);
const FETCHES = Number(process.env['BENCH_FETCHES'] ?? 5);
const WORKERS = Number(process.env['BENCH_WORKERS'] ?? 1);

async function loginOnce(port: number, user: string, password: string): Promise<void> {
  const c = await LineClient.connect(port);
  try {
    await c.readLine();
    const r = await c.command('a', `LOGIN ${user} ${password}`);
    if (!/^a OK/m.test(r)) throw new Error(`login failed: ${r}`);
    await c.command('z', 'LOGOUT');
  } finally { c.close(); }
}

async function loginRate(port: number, user: string, password: string): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => { while (next++ < LOGINS) await loginOnce(port, user, password); }));
  return LOGINS / ((performance.now() - t0) / 1000);
}

async function fetchThroughput(port: number, user: string, password: string, seq: number): Promise<number> {
  const c = await LineClient.connect(port);
  await c.readLine();
  await c.command('a', `LOGIN ${user} ${password}`);
  await c.command('s', 'SELECT INBOX');
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < FETCHES; i++) {
    c.send(`f FETCH ${seq} BODY.PEEK[]`);
    const head = await c.readUntil(/\{\d+\}$/, 30_000);
    const size = Number(/\{(\d+)\}$/.exec(head)![1]);
    await c.readBytes(size, 60_000);
    await c.readUntil(/^f OK/, 30_000);
    bytes += size;
  }
  const mbps = bytes / 1048576 / ((performance.now() - t0) / 1000);
  c.close();
  return mbps;
}

function curlMs(url: string, user: string, password: string, runs = 15): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{time_total}', '--url', url, '--user', `${user}:${password}`]).toString();
    times.push(Number(out) * 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function main(): Promise<void> {
  const world = await startWorld({ dovecotPerfTuning: true });
  const [imapPort] = await allocatePorts(1);
  const raw = worldRawConfig(world, (c) => {
    c['log'] = { level: 'warn' };
    c['workers'] = WORKERS;
    c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: imapPort, tls: 'none' }];
    c['imap'] = { requireTlsForAuth: false };
    c['pop3'] = {};
  });
  const file = join(world.dir, 'bench.yaml');
  writeFileSync(file, stringify(raw));
  const proxy = spawn(process.execPath, [join(root, 'dist/src/main.js'), 'start', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    for (let i = 0; i < 100; i++) { try { (await LineClient.connect(imapPort!)).close(); break; } catch { await new Promise((r) => setTimeout(r, 50)); } }
    const direct = world.backends.a.ports.imap;
    const { uid, password } = world.users.alice;
    // Warm both paths (Dovecot processes, LDAP connection, auth cache).
    await loginRate(direct, uid, password); await loginRate(imapPort!, uid, password);

    const lrDirect = await loginRate(direct, uid, password);
    const lrProxy = await loginRate(imapPort!, uid, password);

    let body = '';
    while (body.length < 10 * 1048576) body += `${randomBytes(54).toString('base64')}\r\n`;
    await world.backends.a.deliver(world.users.alice.mail, `Subject: bench\r\n\r\n${body}`);
    const c = await LineClient.connect(direct); await c.readLine(); await c.command('a', `LOGIN ${uid} ${password}`);
    const sel = await c.command('s', 'SELECT INBOX'); c.close();
    const seq = Number(/\* (\d+) EXISTS/.exec(sel)![1]);
    const sizes = await (async () => { const d = await LineClient.connect(direct); await d.readLine(); await d.command('a', `LOGIN ${uid} ${password}`); await d.command('s', 'SELECT INBOX'); const r = await d.command('z', 'FETCH 1:* (RFC822.SIZE)'); d.close(); return r; })();
    const big = [...sizes.matchAll(/^\* (\d+) FETCH \(RFC822\.SIZE (\d+)\)/gm)].sort((x, y) => Number(y[2]) - Number(x[2]))[0];
    const bigSeq = big ? Number(big[1]) : seq;
    const tpDirect = await fetchThroughput(direct, uid, password, bigSeq);
    const tpProxy = await fetchThroughput(imapPort!, uid, password, bigSeq);

    const curlDirect = curlMs(`imap://127.0.0.1:${direct}/INBOX;UID=1`, uid, password);
    const curlProxy = curlMs(`imap://127.0.0.1:${imapPort}/INBOX;UID=1`, uid, password);

    const r = (x: number, y: number) => (x / y).toFixed(2);
    console.log(JSON.stringify({ logins: LOGINS, concurrency: CONCURRENCY, fetches: FETCHES, workers: WORKERS }));
    console.log(`login rate      direct ${lrDirect.toFixed(0)}/s   proxy ${lrProxy.toFixed(0)}/s   ratio proxy/direct ${r(lrProxy, lrDirect)}`);
    console.log(`10 MiB FETCH    direct ${tpDirect.toFixed(0)} MiB/s   proxy ${tpProxy.toFixed(0)} MiB/s   ratio ${r(tpProxy, tpDirect)}`);
    console.log(`curl imap:// login+fetch (median of 15)   direct ${curlDirect.toFixed(1)} ms   proxy ${curlProxy.toFixed(1)} ms   ratio ${r(curlProxy, curlDirect)}`);
  } finally {
    proxy.kill('SIGTERM');
    await new Promise((res) => setTimeout(res, 300));
    proxy.kill('SIGKILL');
    await world.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
