// Owns the pool-route benchmark: logins/s and proxy CPU µs per login through a pool against a plain host route, same proxy, same run.
// Must not assert anything; it prints figures and ratios (pool / plain) for the issue notes, plus the pure choice's cost per call.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { choosePoolMember, type MemberState } from '../src/directory/pool-route.js';
import { startPoolWorld } from '../test/integration/harness/pool-world.js';
import { LineClient } from '../test/integration/harness/line-client.js';
import { allocatePorts } from '../test/integration/harness/ports.js';
import { sshaHash } from '../test/integration/harness/users.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOGINS = Number(process.env['BENCH_LOGINS'] ?? 600);
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 8);
const USERS = 100;

/** utime + stime of a process in µs (Linux /proc; clock ticks are 100 Hz here). */
function cpuMicros(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

async function loginOnce(port: number, user: string, password: string): Promise<void> {
  const c = await LineClient.connect(port);
  try {
    await c.readLine();
    const r = await c.command('a', `LOGIN ${user} ${password}`);
    if (!/^a OK/m.test(r)) throw new Error(`login failed: ${r}`);
    await c.command('z', 'LOGOUT');
  } finally { c.close(); }
}

async function phase(port: number, users: Array<{ uid: string; password: string }>, pid: number): Promise<{ rate: number; cpuUs: number }> {
  let next = 0;
  const cpu0 = cpuMicros(pid);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < LOGINS) { const u = users[next++ % users.length]!; await loginOnce(port, u.uid, u.password); }
  }));
  const s = (performance.now() - t0) / 1000;
  return { rate: LOGINS / s, cpuUs: (cpuMicros(pid) - cpu0) / LOGINS };
}

function pureChoiceMicros(): number {
  const pool = { name: 'store1', members: [1, 2, 3].map((i) => ({ name: `member${i}`, weight: 1 })), moveBackAfterMs: 300_000, drainWindowMs: 60_000 };
  const states = new Map<string, MemberState>(pool.members.map((m) => [m.name, { condition: 'up', since: 0 }]));
  const n = 50_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) choosePoolMember({ user: `user${i}@example.com`, pool, states, live: [], now: 1 });
  return ((performance.now() - t0) * 1000) / n;
}

async function main(): Promise<void> {
  const world = await startPoolWorld({ members: 3, users: USERS });
  const [imapPort] = await allocatePorts(1);
  // Half the users route through the pool, half to member1 by name: the same proxy, directory and backends.
  const half = USERS / 2;
  const dirFile = join(world.dir, 'bench-users.yaml');
  writeFileSync(dirFile, `users:\n${world.users.map((u, i) => `  ${u.uid}: { password: "${sshaHash(u.password)}", host: ${i < half ? 'store1' : 'member1'} }`).join('\n')}\n`);
  const raw = {
    log: { level: 'warn' },
    listeners: [{ protocol: 'imap', address: '127.0.0.1', port: imapPort, tls: 'none' }],
    imap: { requireTlsForAuth: false },
    directory: { type: 'static', static: { file: dirFile } },
    backends: Object.fromEntries(world.members.map((m) => [m.name, { host: '127.0.0.1', imap: { port: m.dovecot.ports.imap }, trustsProxy: true }])),
    pools: { store1: { members: world.members.map((m) => m.name) } },
    admin: { enabled: false },
  };
  const file = join(world.dir, 'bench-pool.yaml');
  writeFileSync(file, stringify(raw));
  const proxy = spawn(process.execPath, [join(root, 'dist/src/main.js'), 'start', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    for (let i = 0; i < 200; i++) { try { (await LineClient.connect(imapPort!)).close(); break; } catch { await new Promise((r) => setTimeout(r, 50)); } }
    const pooled = world.users.slice(0, half);
    const plain = world.users.slice(half);
    await phase(imapPort!, pooled, proxy.pid!); await phase(imapPort!, plain, proxy.pid!); // warm up
    const runs: Array<{ plain: { rate: number; cpuUs: number }; pool: { rate: number; cpuUs: number } }> = [];
    for (let i = 0; i < 2; i++) runs.push({ plain: await phase(imapPort!, plain, proxy.pid!), pool: await phase(imapPort!, pooled, proxy.pid!) });
    const avg = (f: (r: (typeof runs)[number]) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
    const plainRate = avg((r) => r.plain.rate); const poolRate = avg((r) => r.pool.rate);
    const plainCpu = avg((r) => r.plain.cpuUs); const poolCpu = avg((r) => r.pool.cpuUs);
    console.log(JSON.stringify({ logins: LOGINS, concurrency: CONCURRENCY, users: USERS, members: 3, runs: runs.length }));
    console.log(`login rate        plain ${plainRate.toFixed(0)}/s   pool ${poolRate.toFixed(0)}/s   ratio pool/plain ${(poolRate / plainRate).toFixed(2)}`);
    console.log(`proxy CPU/login   plain ${plainCpu.toFixed(0)} µs   pool ${poolCpu.toFixed(0)} µs   difference ${(poolCpu - plainCpu).toFixed(0)} µs`);
    console.log(`pure choice (choosePoolMember, 3 members, nothing live)   ${pureChoiceMicros().toFixed(2)} µs per call`);
  } finally {
    proxy.kill('SIGTERM');
    await new Promise((res) => setTimeout(res, 300));
    proxy.kill('SIGKILL');
    await world.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
