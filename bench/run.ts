// Owns the benchmark run: starts the test world (slapd + Dovecot tuned for load) and mailproxy child processes, measures
// every figure directly and through each proxy variant in one interleaved run, prints the table, keeps the JSON.
// Must not assert anything: it reports. `--quick` for a short run; for profiling `--cpu-prof` (profiles of the proxies in
// bench/profiles), `--only=mailproxy,cache-off,workers-2` and `--scenarios=fetch,noop,login,mix,held`.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { randomBytes } from 'node:crypto';
import { startWorld, type World } from '../test/integration/harness/world.js';
import { worldRawConfig } from '../test/integration/proxy-fixture.js';
import { allocatePorts } from '../test/integration/harness/ports.js';
import { ImapConn, openLoggedIn } from './imap-client.js';
import { processTree } from './procstat.js';
import { fetchThroughput, heldSessions, interleavedLoginRun, loginRun, median, noopSeries, type Account } from './scenarios.js';
import { formatTable, type TargetResult } from './report.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const cpuProf = args.includes('--cpu-prof');
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const scenarios = args.find((a) => a.startsWith('--scenarios='))?.slice(12).split(',') ?? ['fetch', 'noop', 'login', 'mix', 'held'];
const doing = (s: string) => scenarios.includes(s);
/** `--before=DIR`: a checkout of an earlier commit with its dist built; each variant also runs from it, same run. */
const before = args.find((a) => a.startsWith('--before='))?.slice(9);

const P = quick
  ? { rounds: 1, fetches: 5, logins: 400, concurrency: 16, noops: 500, held: 1000, warm: 100, mixRounds: 2, mixLogins: 300 }
  : { rounds: 3, fetches: 10, logins: 1000, concurrency: 16, noops: 2000, held: 5000, warm: 3000, mixRounds: 7, mixLogins: 1000 };
// `warm`: logins per target before measuring, so that V8 has compiled the login path (steady state, not start-up JIT).
// `mixRounds` × `mixLogins`: the interleaved login run (all proxies at once, session by session), for CPU ratios.
// `--set=noops=20000,warm=0`: override parameters (profiling one scenario).
for (const kv of args.find((a) => a.startsWith('--set='))?.slice(6).split(',') ?? []) {
  const [k, v] = kv.split('=');
  if (k && k in P && v !== undefined) (P as Record<string, number>)[k] = Number(v);
}

interface Variant { name: string; workers: number; cache: boolean; mainJs: string; floor?: boolean }
const mainJs = join(root, 'dist/src/main.js');
const BASE: Variant[] = [
  { name: 'mailproxy', workers: 1, cache: true, mainJs },
  { name: 'cache off', workers: 1, cache: false, mainJs },
  { name: 'workers 2', workers: 2, cache: true, mainJs },
].filter((v) => !only || only.includes(v.name.replace(' ', '-')));
const FLOOR: Variant = { name: 'node floor', workers: 1, cache: false, mainJs: join(root, 'dist/bench/floor-proxy.js'), floor: true };
const VARIANTS: Variant[] = [
  ...(before ? BASE.flatMap((v) => [{ ...v, name: `before ${v.name}`, mainJs: join(before, 'dist/src/main.js') }, v]) : BASE),
  ...(!only || only.includes('node-floor') ? [FLOOR] : []),
];

interface Target { name: string; port: number; pid: number | undefined; proc?: ChildProcess }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One measurement; a failure is reported and leaves a gap in the table instead of ending the run. */
async function attempt<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try { return await fn(); } catch (e) { process.stderr.write(`${what} failed: ${String(e)}\n`); return undefined; }
}

async function startProxy(world: World, v: Variant, profDir: string): Promise<Target> {
  const [port] = await allocatePorts(1);
  if (v.floor) return startChild(v, port!, [v.mainJs, String(port), String(world.backends.a.ports.imap)]);
  const raw = worldRawConfig(world, (c) => {
    c['log'] = { level: 'info' };
    c['workers'] = v.workers;
    c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port, tls: 'none' }];
    c['imap'] = { requireTlsForAuth: false };
    c['pop3'] = {};
    c['directory'] = { ...(c['directory'] as object), cache: { enabled: v.cache } };
  });
  const file = join(world.dir, `bench-${v.name.replaceAll(' ', '-')}.yaml`);
  writeFileSync(file, stringify(raw));
  // A full GC on SIGURG (bench/gc-signal.ts) lets the held-sessions run measure PSS at the same point of V8's GC cycle.
  return startChild(v, port!, [v.mainJs, 'start', '-c', file], profDir);
}

async function startChild(v: Variant, port: number, argv: string[], profDir?: string): Promise<Target> {
  const node = ['--expose-gc', `--import=${join(root, 'dist/bench/gc-signal.js')}`, ...(cpuProf && profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])];
  const proc = spawn(process.execPath, [...node, ...argv], { stdio: ['ignore', 'ignore', 'inherit'] });
  proc.once('exit', (code, signal) => { if (!stopping) process.stderr.write(`proxy ${v.name} exited (${code ?? signal})\n`); });
  // Cluster mode on a loaded machine can take a while (primary, then workers, then the shared listener).
  for (const until = Date.now() + 60_000; Date.now() < until && proc.exitCode === null;) {
    try { (await ImapConn.open(port, 1000)).close(); return { name: v.name, port, pid: proc.pid, proc }; } catch { await sleep(100); }
  }
  throw new Error(`proxy ${v.name} did not come up on ${port}`);
}

let stopping = false;

async function stopProxy(t: Target): Promise<void> {
  stopping = true;
  const p = t.proc;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const tree = t.pid ? processTree(t.pid) : [];
  p.kill('SIGTERM');
  await Promise.race([exited, sleep(8000)]);
  // Whatever of the tree is left (a primary that did not finish draining, its workers) is killed.
  for (const pid of tree) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root }).toString().trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch { return 'unknown'; }
}

/** A 10 MiB message (base64 lines) delivered over LMTP; returns its sequence number. */
async function preloadBig(world: World, acct: Account): Promise<number> {
  let body = '';
  while (body.length < 10 * 1048576) body += `${randomBytes(57 * 64).toString('base64').replace(/(.{76})/g, '$1\r\n')}\r\n`;
  await world.backends.a.deliver(world.users.alice.mail, `From: bench@example.test\r\nSubject: bench 10 MiB\r\n\r\n${body}`);
  const c = await openLoggedIn(world.backends.a.ports.imap, acct.user, acct.password, true);
  const sizes = await c.command('FETCH 1:* (RFC822.SIZE)');
  c.close();
  // Maildir order is by file name, not delivery: take the largest message.
  const all = [...sizes.matchAll(/^\* (\d+) FETCH \(RFC822\.SIZE (\d+)\)/gm)].map((m) => [Number(m[1]), Number(m[2])] as const);
  const big = all.sort((x, y) => y[1] - x[1])[0];
  if (!big || big[1] < 10 * 1048576) throw new Error(`10 MiB message not found: ${sizes}`);
  return big[0];
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const world = await startWorld({ dovecotPerfTuning: true });
  // Where the proxies' preload (bench/gc-signal.ts) writes V8's heap figures at each forced GC: the held figure's split.
  process.env['BENCH_MEM_DIR'] = world.dir;
  const profDir = join(root, 'bench', 'profiles');
  if (cpuProf) mkdirSync(profDir, { recursive: true });
  const targets: Target[] = [];
  try {
    const acct: Account = { user: world.users.alice.uid, password: world.users.alice.password };
    const seq = await preloadBig(world, acct);
    const direct: Target = { name: 'direct', port: world.backends.a.ports.imap, pid: undefined };
    targets.push(direct);
    for (const v of VARIANTS) targets.push(await startProxy(world, v, profDir));
    const ldapPid = world.ldap.pid();
    const res = new Map<string, TargetResult>(targets.map((t) => [t.name, { fetch: [], fetchBest: [], clientMBps: [], fetchCpu: [], backendFetchCpu: [], noopP50: [], noopP99: [], noopCpu: [], rate: [], cpu: [], ldap: [], dovecot: [], mixCpu: [], mixRatio: [] }]));
    const r = (t: Target) => res.get(t.name)!;

    for (const t of targets) if (P.warm > 0) await loginRun(t.port, acct, P.warm, P.concurrency, undefined, undefined);
    for (let round = 0; round < P.rounds; round++) {
      process.stderr.write(`round ${round + 1}/${P.rounds}\n`);
      for (const t of targets) {
        if (!doing('fetch')) break;
        const f = await attempt(`fetch ${t.name}`, () => fetchThroughput(t.port, acct, seq, P.fetches, t.pid, world.backends.a.pid()));
        if (f) { r(t).fetch.push(f.median); r(t).fetchBest.push(f.best); r(t).clientMBps.push(f.clientMBps); r(t).fetchCpu.push(f.proxyCpuUsPerMB); r(t).backendFetchCpu.push(f.backendCpuUsPerMB); }
      }
      for (const t of targets) { if (!doing('noop')) break; const n = await attempt(`noop ${t.name}`, () => noopSeries(t.port, acct, P.noops, t.pid)); if (n) { r(t).noopP50.push(n.p50); r(t).noopP99.push(n.p99); r(t).noopCpu.push(n.proxyCpuUs); } }
      for (const t of targets) {
        if (!doing('login')) break;
        const l = await attempt(`logins ${t.name}`, () => loginRun(t.port, acct, P.logins, P.concurrency, t.pid, ldapPid, world.backends.a.pid()));
        if (l) { r(t).rate.push(l.sessionsPerSec); r(t).cpu.push(l.proxyCpuUs); r(t).ldap.push(l.ldapCpuUs); r(t).dovecot.push(l.backendCpuUs); }
      }
    }
    // CPU ratios between the proxies with the machine's swings taken out: all of them at once, session by session.
    const proxies = targets.filter((t): t is Target & { pid: number } => t.pid !== undefined);
    for (let round = 0; doing('mix') && proxies.length > 1 && round < P.mixRounds; round++) {
      process.stderr.write(`interleaved logins ${round + 1}/${P.mixRounds}\n`);
      const cpu = await attempt('interleaved logins', () => interleavedLoginRun(proxies, acct, P.mixLogins, P.concurrency));
      if (cpu) proxies.forEach((t, k) => { r(t).mixCpu.push(cpu[k]!); r(t).mixRatio.push(cpu[k]! / cpu[0]!); });
    }
    for (const t of targets) {
      if (!doing('held')) break;
      process.stderr.write(`held ${P.held}: ${t.name}\n`);
      const h = await attempt(`held ${t.name}`, () => heldSessions(t.port, acct, P.held, 64, t.pid));
      if (h) r(t).held = h;
    }

    const summary = Object.fromEntries(targets.map((t) => {
      const x = r(t);
      return [t.name, {
        fetchMBps: median(x.fetch), fetchBestMBps: Math.max(...x.fetchBest), clientCeilingMBps: median(x.clientMBps), proxyCpuUsPerMB: median(x.fetchCpu), dovecotCpuUsPerMB: median(x.backendFetchCpu), proxyCpuUsPerNoop: median(x.noopCpu), noopP50Us: median(x.noopP50), noopP99Us: median(x.noopP99),
        sessionsPerSec: median(x.rate), proxyCpuUsPerSession: median(x.cpu), interleavedCpuUsPerSession: median(x.mixCpu), interleavedRatio: median(x.mixRatio), interleavedRatioRange: x.mixRatio.length ? [Math.min(...x.mixRatio), Math.max(...x.mixRatio)] : [], ldapCpuUsPerSession: median(x.ldap), dovecotCpuUsPerSession: median(x.dovecot),
        heldKiBPerSession: x.held?.pssPerSessionKiB ?? NaN, heldSettledKiBPerSession: x.held?.settledPerSessionKiB ?? NaN, held: x.held, raw: x,
      }];
    }));
    const table = formatTable(targets.map((t) => t.name), summary);
    console.log(table);
    const result = {
      commit: commit(), date: new Date().toISOString(), quick, node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model,
      params: P, variants: VARIANTS, before: before ?? null, seconds: Math.round((Date.now() - t0) / 1000), summary, table,
    };
    if (only || !['fetch', 'noop', 'login', 'held'].every(doing) || cpuProf) { console.log('partial or profiled run: not saved'); return; }
    const dir = join(root, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${result.date.replace(/[:.]/g, '-')}-${result.commit.slice(0, 10)}${quick ? '-quick' : ''}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`saved ${file} (${result.seconds} s)`);
  } finally {
    for (const t of targets) await stopProxy(t);
    await world.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
