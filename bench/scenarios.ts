// Owns the benchmark's measurements against one IMAP port: FETCH throughput, login rate with CPU per session, NOOP
// round trips, held idle sessions. Must not know whether the port is the proxy or Dovecot; the caller passes the pids to watch.
import { ImapConn, openLoggedIn } from './imap-client.js';
import { readFileSync } from 'node:fs';
import { processTree, pssByKind, treeCpuMicros, treePssKiB } from './procstat.js';

export interface Account { user: string; password: string }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** MB/s (10^6 bytes) of `count` FETCHes of message `seq` on one logged-in connection: median and best per fetch, and the client's own ceiling. */
export async function fetchThroughput(port: number, acct: Account, seq: number, count: number, proxyPid: number | undefined, backendPid: number | undefined): Promise<{ median: number; best: number; bytes: number; clientMBps: number; proxyCpuUsPerMB: number; backendCpuUsPerMB: number }> {
  const c = await openLoggedIn(port, acct.user, acct.password, true);
  try {
    const rates: number[] = [];
    let bytes = 0;
    let clientCpuUs = 0;
    let proxyCpuUs = 0;
    let backendCpuUs = 0;
    await c.countReply(`FETCH ${seq} BODY.PEEK[]`); // warm: page cache, Dovecot's index, both processes' code
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      const cpu0 = process.cpuUsage();
      const proxy0 = proxyPid ? treeCpuMicros(proxyPid) : 0;
      const backend0 = backendPid ? treeCpuMicros(backendPid) : 0;
      const tagged = await c.countReply(`FETCH ${seq} BODY.PEEK[]`);
      const ns = Number(process.hrtime.bigint() - t0);
      const cpu = process.cpuUsage(cpu0);
      if (proxyPid) proxyCpuUs += treeCpuMicros(proxyPid) - proxy0;
      if (backendPid) backendCpuUs += treeCpuMicros(backendPid) - backend0;
      clientCpuUs += cpu.user + cpu.system;
      if (!/^T\d+ OK/.test(tagged)) throw new Error(`FETCH failed: ${tagged}`);
      bytes = c.counted;
      rates.push(c.counted / (ns / 1e3)); // bytes per µs = MB/s
    }
    // clientMBps: what this client could read if it had a core to itself (bytes per µs of its own CPU).
    return {
      median: median(rates), best: Math.max(...rates), bytes, clientMBps: (bytes * count) / clientCpuUs,
      proxyCpuUsPerMB: proxyPid ? proxyCpuUs / ((bytes * count) / 1e6) : NaN,
      backendCpuUsPerMB: backendPid ? backendCpuUs / ((bytes * count) / 1e6) : NaN,
    };
  } finally { c.close(); }
}

export interface LoginFigures {
  sessionsPerSec: number;
  /** Proxy CPU (process tree) per session, µs; NaN when no proxy pid is given. */
  proxyCpuUs: number;
  /** slapd CPU per session, µs. */
  ldapCpuUs: number;
  /** Dovecot (master and all its processes) CPU per session, µs: what the backend itself spends, for scale. */
  backendCpuUs: number;
  failed: number;
}

async function oneSession(port: number, acct: Account): Promise<void> {
  const c = await ImapConn.open(port);
  try {
    await c.login(acct.user, acct.password);
    await c.command('SELECT INBOX');
    await c.command('LOGOUT');
  } finally { c.close(); }
}

/**
 * `perTarget` sessions on each of `targets` at once, interleaved session by session (session i goes to target i mod n,
 * `concurrency` in flight): every target sees the same machine at the same moments, so the ratio of two targets' CPU per
 * session holds within a few per cent on a VM whose absolute figure swings 2× between consecutive runs. Proxy CPU
 * (process tree) per completed session, µs, per target; absolute values are higher than loginRun's (each proxy idles
 * between its sessions and pays more wake-ups), so compare them only with each other.
 */
export async function interleavedLoginRun(targets: Array<{ port: number; pid: number }>, acct: Account, perTarget: number, concurrency: number): Promise<number[]> {
  let next = 0;
  const done = targets.map(() => 0);
  const cpu0 = targets.map((t) => treeCpuMicros(t.pid));
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < perTarget * targets.length; i = next++) {
      const k = i % targets.length;
      await oneSession(targets[k]!.port, acct).then(() => { done[k]!++; }, () => undefined);
    }
  }));
  await sleep(200);
  return targets.map((t, k) => (treeCpuMicros(t.pid) - cpu0[k]!) / Math.max(1, done[k]!));
}

/** `total` LOGIN+SELECT+LOGOUT sessions, `concurrency` at a time; CPU of the proxy tree and slapd per session. */
export async function loginRun(port: number, acct: Account, total: number, concurrency: number, proxyPid: number | undefined, ldapPid: number | undefined, backendPid?: number): Promise<LoginFigures> {
  let next = 0;
  const backend0 = backendPid ? treeCpuMicros(backendPid) : 0;
  const cpu0 = proxyPid ? treeCpuMicros(proxyPid) : 0;
  const ldap0 = ldapPid ? treeCpuMicros(ldapPid) : 0;
  const t0 = performance.now();
  let failed = 0;
  let firstError: unknown;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < total) await oneSession(port, acct).catch((e: unknown) => { failed++; firstError ??= e; });
  }));
  if (failed > 0) process.stderr.write(`login run on ${port}: ${failed} of ${total} sessions failed, first: ${String(firstError)}\n`);
  const secs = (performance.now() - t0) / 1000;
  // Let the proxy finish closing (summary records, backend sockets) before reading its CPU.
  await sleep(200);
  return {
    sessionsPerSec: (total - failed) / secs,
    failed,
    proxyCpuUs: proxyPid ? (treeCpuMicros(proxyPid) - cpu0) / total : NaN,
    ldapCpuUs: ldapPid ? (treeCpuMicros(ldapPid) - ldap0) / total : NaN,
    backendCpuUs: backendPid ? (treeCpuMicros(backendPid) - backend0) / total : NaN,
  };
}

/** NOOP round trips on one logged-in, selected connection; µs, and the proxy's CPU per round trip. */
export async function noopSeries(port: number, acct: Account, count: number, proxyPid: number | undefined): Promise<{ p50: number; p99: number; proxyCpuUs: number }> {
  const c = await openLoggedIn(port, acct.user, acct.password, true);
  try {
    for (let i = 0; i < 200; i++) await c.command('NOOP');
    const rtts: number[] = [];
    const proxy0 = proxyPid ? treeCpuMicros(proxyPid) : 0;
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      await c.command('NOOP');
      rtts.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    const proxyCpuUs = proxyPid ? (treeCpuMicros(proxyPid) - proxy0) / count : NaN;
    return { p50: percentile(rtts, 50), p99: percentile(rtts, 99), proxyCpuUs };
  } finally { c.close(); }
}

export interface HeldFigures {
  held: number;
  /** Seconds to open and log in all of them. */
  openSecs: number;
  /** Proxy PSS growth per held session after a full GC (before and after), KiB; NaN without a proxy pid. */
  pssPerSessionKiB: number;
  /** The same 3 s after the last login, without forcing a GC (depends on where V8's GC cycle happens to be). */
  settledPerSessionKiB: number;
  pssBeforeKiB: number;
  pssHeldKiB: number;
  /** Where the growth per held session is, KiB (after the full GC): see `MemSplit`; absent without BENCH_MEM_DIR. */
  split?: MemSplit;
}

/**
 * The held-sessions growth per session, KiB, split: V8's heap pages (`v8Heap`, of which `youngGen` is the new space and
 * `liveJs` what the full GC kept), `external` (Buffers and ArrayBuffers V8 knows of), and the PSS growth outside V8's heap
 * (`native` = PSS − V8 heap: malloc'd memory of libuv, sockets, OpenSSL; `brk` the part in glibc's main arena).
 */
export interface MemSplit { v8Heap: number; youngGen: number; liveJs: number; external: number; native: number; brk: number }

interface MemSample { brk: number; v8Heap: number; youngGen: number; liveJs: number; external: number }

/** The proxy tree's figures right after a full GC: glibc's arena from /proc, V8's own from the files bench/gc-signal.ts writes. */
function memSample(pid: number): MemSample | undefined {
  const dir = process.env['BENCH_MEM_DIR'];
  if (!dir) return undefined;
  const s: MemSample = { brk: 0, v8Heap: 0, youngGen: 0, liveJs: 0, external: 0 };
  for (const p of processTree(pid)) {
    s.brk += pssByKind(p).brk;
    try {
      const m = JSON.parse(readFileSync(`${dir}/mem-${p}.json`, 'utf8')) as { usage: NodeJS.MemoryUsage; heap: { total_physical_size: number }; spaces: Record<string, { physical: number }> };
      s.v8Heap += m.heap.total_physical_size / 1024;
      s.youngGen += (m.spaces['new_space']?.physical ?? 0) / 1024;
      s.liveJs += m.usage.heapUsed / 1024;
      s.external += m.usage.external / 1024;
    } catch { /* not written: no preload in this process */ }
  }
  return s;
}

/** Ask every process of the proxy for a full GC (bench/gc-signal.ts) and let it finish. */
async function fullGc(pid: number): Promise<void> {
  for (const p of processTree(pid)) { try { process.kill(p, 'SIGURG'); } catch { /* gone */ } }
  await sleep(1500);
}

/** Open `count` logged-in idle sessions (LOGIN only), measure the proxy's PSS growth, then close them all. */
export async function heldSessions(port: number, acct: Account, count: number, concurrency: number, proxyPid: number | undefined): Promise<HeldFigures> {
  if (proxyPid) await fullGc(proxyPid);
  const before = proxyPid ? treePssKiB(proxyPid) : NaN;
  const mem0 = proxyPid ? memSample(proxyPid) : undefined;
  const conns: ImapConn[] = [];
  let next = 0;
  const t0 = performance.now();
  try {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next++ < count) conns.push(await openLoggedIn(port, acct.user, acct.password, false));
    }));
    const openSecs = (performance.now() - t0) / 1000;
    await sleep(3000); // idle: timers armed, login garbage collectable
    const settled = proxyPid ? treePssKiB(proxyPid) : NaN;
    if (proxyPid) await fullGc(proxyPid);
    const held = proxyPid ? treePssKiB(proxyPid) : NaN;
    const mem1 = proxyPid ? memSample(proxyPid) : undefined;
    const alive = conns.filter((c) => !c.closed).length;
    const per = (k: keyof MemSample) => (mem1![k] - mem0![k]) / count;
    const split = mem0 && mem1 ? { v8Heap: per('v8Heap'), youngGen: per('youngGen'), liveJs: per('liveJs'), external: per('external'), native: (held - before) / count - per('v8Heap'), brk: per('brk') } : undefined;
    return { held: alive, openSecs, pssBeforeKiB: before, pssHeldKiB: held, pssPerSessionKiB: (held - before) / count, settledPerSessionKiB: (settled - before) / count, ...(split ? { split } : {}) };
  } finally {
    for (const c of conns) c.close();
    await sleep(1000);
  }
}
