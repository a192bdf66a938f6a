// Owns the tier benchmark: CPU µs and latency per IMAP login through a proxy without `tier:` and one with it (real Redis),
// same world, same run. Must not assert anything; it prints the figures for the issue notes.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startWorld } from '../test/integration/harness/world.js';
import { startRedis } from '../test/integration/harness/redis.js';
import { worldRawConfig } from '../test/integration/proxy-fixture.js';
import { LineClient } from '../test/integration/harness/line-client.js';
import { allocatePorts } from '../test/integration/harness/ports.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LATENCY_LOGINS = Number(process.env['BENCH_LOGINS'] ?? 300);
const CPU_LOGINS = Number(process.env['BENCH_CPU_LOGINS'] ?? 600);
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 8);
const TICK_US = 1e6 / 100; // USER_HZ on Linux

/** utime + stime of a process in µs (from /proc). */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

/** One login; resolves the ms from LOGIN sent to its OK. */
async function loginOnce(port: number, user: string, password: string): Promise<number> {
  const c = await LineClient.connect(port);
  try {
    await c.readLine();
    const t = performance.now();
    const r = await c.command('a', `LOGIN ${user} ${password}`);
    const ms = performance.now() - t;
    if (!/^a OK/m.test(r)) throw new Error(`login failed: ${r}`);
    await c.command('z', 'LOGOUT');
    return ms;
  } finally { c.close(); }
}

async function cpuPerLogin(pid: number, port: number, user: string, password: string): Promise<number> {
  let next = 0;
  const before = cpuUs(pid);
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => { while (next++ < CPU_LOGINS) await loginOnce(port, user, password); }));
  return (cpuUs(pid) - before) / CPU_LOGINS;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function main(): Promise<void> {
  const world = await startWorld({ dovecotPerfTuning: true });
  const redis = await startRedis({ dir: join(world.dir, 'redis') });
  const procs: ChildProcess[] = [];
  const start = async (name: string, tier: boolean): Promise<{ port: number; pid: number }> => {
    const [port] = await allocatePorts(1);
    const raw = worldRawConfig(world, (c) => {
      c['instanceName'] = name;
      c['log'] = { level: 'warn' };
      c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port, tls: 'none' }];
      c['imap'] = { requireTlsForAuth: false };
      c['pop3'] = {};
      if (tier) c['tier'] = { instanceName: name, redis: { host: '127.0.0.1', port: redis.port } };
    });
    const file = join(world.dir, `${name}.yaml`);
    writeFileSync(file, stringify(raw));
    const prof = process.env['BENCH_PROF_DIR'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_PROF_DIR']}/${name}`] : [];
    const p = spawn(process.execPath, [...prof, join(root, 'dist/src/main.js'), 'start', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(p);
    for (let i = 0; i < 400; i++) { try { (await LineClient.connect(port!)).close(); break; } catch { await new Promise((r) => setTimeout(r, 50)); } }
    return { port: port!, pid: p.pid! };
  };
  try {
    const plain = await start('plain', false);
    const tiered = await start('tiered', true);
    await new Promise((r) => setTimeout(r, 1000)); // the tier connects
    const { uid, password } = world.users.alice;
    // Warm both (LDAP connection, directory cache, Dovecot processes, JIT).
    for (let i = 0; i < 50; i++) { await loginOnce(plain.port, uid, password); await loginOnce(tiered.port, uid, password); }

    // Latency: sequential logins, alternating, so both see the same machine load.
    const lat = { plain: [] as number[], tiered: [] as number[] };
    for (let i = 0; i < LATENCY_LOGINS; i++) {
      lat.plain.push(await loginOnce(plain.port, uid, password));
      lat.tiered.push(await loginOnce(tiered.port, uid, password));
    }
    // CPU: a concurrent batch against each, process CPU time (user + system) of the proxy divided by logins.
    const cpuPlain = await cpuPerLogin(plain.pid, plain.port, uid, password);
    const cpuTiered = await cpuPerLogin(tiered.pid, tiered.port, uid, password);
    const cpuPlain2 = await cpuPerLogin(plain.pid, plain.port, uid, password);
    const cpuTiered2 = await cpuPerLogin(tiered.pid, tiered.port, uid, password);

    const f = (x: number) => x.toFixed(2);
    console.log(JSON.stringify({ latencyLogins: LATENCY_LOGINS, cpuLogins: CPU_LOGINS, concurrency: CONCURRENCY }));
    console.log(`login latency (LOGIN → OK)   without tier: median ${f(pct(lat.plain, 0.5))} ms, p95 ${f(pct(lat.plain, 0.95))} ms   with tier: median ${f(pct(lat.tiered, 0.5))} ms, p95 ${f(pct(lat.tiered, 0.95))} ms   added: median ${f(pct(lat.tiered, 0.5) - pct(lat.plain, 0.5))} ms`);
    console.log(`proxy CPU per login          without tier: ${cpuPlain.toFixed(0)} / ${cpuPlain2.toFixed(0)} µs   with tier: ${cpuTiered.toFixed(0)} / ${cpuTiered2.toFixed(0)} µs   added: ${((cpuTiered + cpuTiered2 - cpuPlain - cpuPlain2) / 2).toFixed(0)} µs (two batches each)`);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of procs) p.kill('SIGKILL');
    await redis.stop();
    await world.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
