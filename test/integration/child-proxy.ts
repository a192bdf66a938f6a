// Owns running the built mailproxy (`node dist/src/main.js start -c FILE`) as a child process in front of the test world:
// YAML config in world.dir, JSON log capture, waiting for listeners, signals and exit. Must not assert anything.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { World } from './harness/world.js';
import type { RawConfig } from './proxy-fixture.js';
import { LineClient } from './harness/line-client.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');

export type LogLine = Record<string, unknown> & { msg?: string; pid?: number };

export interface ChildProxy {
  proc: ChildProcess;
  pid: number;
  file: string;
  /** Parsed JSON log lines from stdout (every process of the instance), in arrival order. */
  logs: LogLine[];
  /** Everything that was not a JSON log line (stderr, partial lines). */
  otherOutput(): string;
  /** Port of the first listener for (protocol, tls) as logged by 'listening'. */
  port(protocol: string, tls: string): number;
  adminPort: number | undefined;
  agentPort: number | undefined;
  /** First log line at index ≥ from that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>;
  /** Rewrite the config file (a raw object is written as YAML, a string as is). */
  writeConfig(raw: RawConfig | string): void;
  signal(sig: NodeJS.Signals): void;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** SIGTERM, then SIGKILL after graceMs if still running. */
  stop(graceMs?: number): Promise<void>;
}

/** `wrap`: a command prefix the proxy runs under (e.g. a sandbox that then execs node). */
export async function startChildProxy(world: Pick<World, 'dir'>, raw: RawConfig, opts: { name?: string; timeoutMs?: number; wrap?: string[] } = {}): Promise<ChildProxy> {
  const file = join(world.dir, `${opts.name ?? 'child-proxy'}.yaml`);
  const write = (r: RawConfig | string) => writeFileSync(file, typeof r === 'string' ? r : stringify(r));
  write(raw);
  const command = [...(opts.wrap ?? []), process.execPath, MAIN, 'start', '-c', file];
  const proc = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const other: string[] = [];
  const waiters = new Set<() => void>();
  const wake = () => { for (const w of [...waiters]) w(); };
  let partial = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      try { logs.push(JSON.parse(line) as LogLine); } catch { other.push(line); }
    }
    wake();
  });
  proc.stderr!.on('data', (d: Buffer) => { other.push(d.toString('utf8')); wake(); });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    proc.once('exit', (code, signal) => { done = true; resolve({ code, signal, at: Date.now() }); wake(); });
  });

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 10_000, from = 0): Promise<LogLine> => new Promise((resolve, reject) => {
    const check = () => {
      for (let i = from; i < logs.length; i++) if (pred(logs[i]!)) { cleanup(); resolve(logs[i]!); return true; }
      if (done) { cleanup(); reject(new Error(`mailproxy exited before the awaited log line; output:\n${other.join('').slice(-3000)}`)); return true; }
      return false;
    };
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out after ${timeoutMs} ms waiting for a log line; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}\n${other.join('').slice(-2000)}`)); }, timeoutMs);
    const cleanup = () => { clearTimeout(timer); waiters.delete(onWake); };
    const onWake = () => { check(); };
    if (!check()) waiters.add(onWake);
  });

  const listeners = (raw['listeners'] as unknown[] | undefined)?.length ?? 1;
  const adminOn = (raw['admin'] as { enabled?: boolean } | undefined)?.enabled !== false;
  const agentOn = (raw['admin'] as { agentCheckPort?: number } | undefined)?.agentCheckPort !== undefined;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  try {
    await waitForLog(() => logs.filter((l) => l.msg === 'listening').length >= listeners, timeoutMs);
    if (adminOn) await waitForLog((l) => l.msg === 'admin HTTP listening', timeoutMs);
    if (agentOn) await waitForLog((l) => l.msg === 'agent-check listening', timeoutMs);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  const bound = logs.filter((l) => l.msg === 'listening');
  const portOf = (msg: string) => logs.find((l) => l.msg === msg)?.['port'] as number | undefined;

  return {
    proc,
    pid: proc.pid!,
    file,
    logs,
    otherOutput: () => other.join(''),
    port(protocol, tls) {
      const b = bound.find((l) => l['protocol'] === protocol && l['tls'] === tls);
      if (!b) throw new Error(`no ${protocol}/${tls} listener logged`);
      return b['port'] as number;
    },
    adminPort: adminOn ? portOf('admin HTTP listening') : undefined,
    agentPort: agentOn ? portOf('agent-check listening') : undefined,
    waitForLog,
    writeConfig: write,
    signal: (sig) => { if (!done) proc.kill(sig); },
    exited,
    async stop(graceMs = 5000) {
      if (done) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** GET an admin endpoint: status and body text. */
export function adminGet(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`admin ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of one Prometheus sample (`name{labels}`), undefined when absent. */
export function metricValue(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** The agent-check's one-line answer. */
export function agentSays(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let text = '';
    s.on('data', (d: Buffer) => { text += d.toString('utf8'); });
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
}

/** Resolves with the ms until a connect is refused (polling every 10 ms), rejects after limitMs. */
export async function msUntilRefused(port: number, limitMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < limitMs) {
    try {
      const c = await LineClient.connect(port, { timeoutMs: 500 });
      c.close();
    } catch {
      return Date.now() - t0;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`port ${port} still accepted connections after ${limitMs} ms`);
}
