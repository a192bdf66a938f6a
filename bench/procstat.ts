// Owns reading process figures from /proc: CPU time (utime+stime) and PSS of a process and its children.
// Must not start or stop processes; it only reads /proc files (Linux).
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/PID/stat; 100 on every Linux this runs on. */
const CLK_TCK = 100;

/** The process and all its descendants (cluster workers; Dovecot's imap processes), from /proc/PID/task/PID/children. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    try {
      for (const c of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch { /* gone */ }
  }
  return out;
}

/**
 * CPU time of one process in µs: the sum of its threads' run time from /proc/PID/task/TID/schedstat (nanoseconds, so
 * short runs resolve), falling back to utime + stime of /proc/PID/stat (10 ms ticks).
 */
export function cpuMicros(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try { ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]); } catch { /* thread ended */ }
    }
    return ns / 1e3;
  } catch { return statCpuMicros(pid); }
}

/** Ticks of /proc/PID/stat fields `first` and `first + 1` (1-based field numbers), in µs. */
function statPairMicros(pid: number, first: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at ") ", i.e. with field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[first - 3]) + Number(rest[first - 2])) * 1e6) / CLK_TCK;
  } catch { return 0; }
}

/** utime + stime (fields 14 and 15). */
function statCpuMicros(pid: number): number { return statPairMicros(pid, 14); }

/**
 * CPU time of a process tree (the proxy with its workers; Dovecot with its imap processes) in µs: the live processes'
 * own time, plus what children that already exited used (cutime + cstime, fields 16 and 17, counted by the parent
 * that reaped them). Without the second part a tree whose processes come and go (Dovecot restarting an imap process
 * after service_count clients) loses their time and its figure can even go down.
 */
export function treeCpuMicros(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + cpuMicros(p) + statPairMicros(p, 16), 0);
}

/** Proportional set size in KiB, from /proc/PID/smaps_rollup. */
export function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

export function treePssKiB(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + pssKiB(p), 0);
}

/** PSS in KiB split by mapping kind, from /proc/PID/smaps: `brk` (glibc's main arena), `anon` (V8 pages, other arenas, thread stacks), `file`. */
export function pssByKind(pid: number): { brk: number; anon: number; file: number } {
  const out = { brk: 0, anon: 0, file: 0 };
  try {
    let kind: keyof typeof out = 'anon';
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (head) { const name = head[1] ?? ''; kind = name === '[heap]' ? 'brk' : name.startsWith('/') ? 'file' : 'anon'; continue; }
      const m = /^Pss:\s+(\d+) kB/.exec(line);
      if (m) out[kind] += Number(m[1]);
    }
  } catch { /* gone */ }
  return out;
}
