// Owns the lifecycle of every fixture process the harness spawns: spawn, signal whole process trees, kill on exit.
// Must not know about LDAP or Dovecot specifics, and must never signal a process it did not spawn itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';

const live = new Set<ChildProcess>();
let hooksInstalled = false;

/** Direct and indirect children of `pid`, read from /proc (Linux only). */
export function descendantsOf(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command, which may itself contain spaces or ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      const list = byParent.get(ppid) ?? [];
      list.push(Number(name));
      byParent.set(ppid, list);
    } catch {
      // process vanished while scanning
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift()!;
    for (const child of byParent.get(next) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/** Send `signal` to `pid` and every descendant; missing processes are ignored. */
export function signalTree(pid: number, signal: NodeJS.Signals): void {
  const pids = [pid, ...descendantsOf(pid)];
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch {
      // already gone
    }
  }
}

function allThreadsStopped(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return true; // gone
  }
  for (const t of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'T' && state !== 't' && state !== 'Z' && state !== 'X') return false;
    } catch {
      // thread ended
    }
  }
  return true;
}

function waitStoppedSync(pid: number, deadline: number): void {
  while (!allThreadsStopped(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not stop after SIGSTOP`);
  }
}

/**
 * SIGSTOP `pid` and its descendants and return only once every thread of each is stopped: a
 * group stop is asynchronous, and a thread already running (e.g. slapd's listener) would
 * otherwise still answer a request sent right after kill().
 */
export function pauseTree(pid: number): void {
  const deadline = Date.now() + 2000;
  try {
    process.kill(pid, 'SIGSTOP');
  } catch {
    return;
  }
  // Once the parent is stopped it cannot fork, so the list of descendants is final.
  waitStoppedSync(pid, deadline);
  const children = descendantsOf(pid);
  for (const c of children) {
    try {
      process.kill(c, 'SIGSTOP');
    } catch {
      // gone
    }
  }
  for (const c of children) waitStoppedSync(c, deadline);
}

/** pid(), pause() and resume() of a fixture that may be stopped and restarted: each acts on the process `current()` returns now. */
export function treeControls(current: () => Spawned | undefined): { pid(): number | undefined; pause(): void; resume(): void } {
  const pid = (): number | undefined => current()?.child.pid;
  return {
    pid,
    pause: () => {
      const p = pid();
      if (p !== undefined) pauseTree(p);
    },
    resume: () => {
      const p = pid();
      if (p !== undefined) signalTree(p, 'SIGCONT');
    },
  };
}

function killAllSync(): void {
  for (const child of live) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    const tree = [child.pid, ...descendantsOf(child.pid)];
    for (const p of tree) {
      try {
        process.kill(p, 'SIGCONT');
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync();
      // Only re-raise when nobody else handles the signal, so default termination still happens.
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

export interface Spawned {
  child: ChildProcess;
  exited: Promise<void>;
  /** Tail of what the process wrote to stdout/stderr (kept in `outputPath`). */
  output(): string;
}

/**
 * Spawn a long-running fixture process with stdout+stderr appended to `outputPath`; it is killed
 * (with its tree) if this Node process exits.
 */
export function spawnFixture(cmd: string, args: string[], cwd: string, outputPath: string): Spawned {
  installHooks();
  const fd = openSync(outputPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { cwd, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  let spawnError = '';
  live.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      live.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = String(err);
      live.delete(child);
      resolve();
    });
  });
  const output = (): string => {
    let text = '';
    try {
      text = readFileSync(outputPath, 'utf8');
    } catch {
      // not written yet
    }
    return (spawnError + text).slice(-4000);
  };
  return { child, exited, output };
}

function killPids(pids: number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/**
 * Stop a fixture and every process below it. `graceful`: SIGTERM the top process and wait up to
 * `graceMs` before SIGKILL; otherwise SIGKILL the whole tree at once (a crash, and fast: Dovecot's
 * master takes about 1 s to honour SIGTERM). Survivors of the tree are always killed, since
 * orphaned children (e.g. Dovecot login processes) would keep the listening sockets open.
 */
export async function stopFixture(sp: Spawned, opts: { graceful?: boolean; graceMs?: number } = {}): Promise<void> {
  const pid = sp.child.pid;
  if (pid === undefined || sp.child.exitCode !== null || sp.child.signalCode !== null) return;
  if (opts.graceful === true) {
    const tree = [pid, ...descendantsOf(pid)];
    signalTree(pid, 'SIGCONT');
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      sp.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), opts.graceMs ?? 3000))),
    ]);
    clearTimeout(timer);
    if (timedOut) killPids(tree);
  } else {
    // A stopped parent cannot fork between listing its children and the kill.
    try {
      pauseTree(pid);
    } catch {
      // kill anyway
    }
    killPids([pid, ...descendantsOf(pid)]);
  }
  await sp.exited;
}

/** Run a short command to completion; rejects with its stderr on a non-zero exit. */
export function runCommand(cmd: string, args: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const withInput = opts.input !== undefined;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    // A hung helper (slapadd, openssl) is killed, so a world start fails in time to be retried within the hook's timeout.
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: [withInput ? 'pipe' : 'ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve(out);
      else if (signal !== null) reject(new Error(`${cmd} ${args.join(' ')} killed by ${signal} (timeout ${timeoutMs} ms): ${err.trim() || out.trim()}`));
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim() || out.trim()}`));
    });
    if (withInput) {
      // A command may exit without reading its input; that EPIPE is not the caller's problem.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(opts.input);
    }
  });
}
