// Owns reaping fixtures left behind by an earlier test run that died without teardown (e.g. SIGKILLed mocha).
// Must not touch any process unless its command line names a world folder whose owning Node process is gone.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { descendantsOf } from './processes.js';

export const WORLD_PARENT = '/tmp';
export const WORLD_PREFIX = 'mpw-';
const OWNER_FILE = 'owner.pid';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function markOwner(dir: string): void {
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
}

/** Kill fixture masters (slapd, dovecot) still running from dead owners' world folders, then remove those folders. */
export function reapStaleWorlds(): void {
  let names: string[];
  try {
    names = readdirSync(WORLD_PARENT).filter((n) => n.startsWith(WORLD_PREFIX));
  } catch {
    return;
  }
  const stale: string[] = [];
  for (const n of names) {
    const dir = join(WORLD_PARENT, n);
    try {
      const owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && !alive(owner)) stale.push(dir);
    } catch {
      // no owner file: not ours, or still being created
    }
  }
  if (stale.length === 0) return;
  for (const pidName of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pidName}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (!stale.some((d) => cmdline.includes(`${d}/`))) continue;
    const pid = Number(pidName);
    for (const p of [pid, ...descendantsOf(pid)]) {
      try {
        process.kill(p, 'SIGCONT');
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  for (const d of stale) rmSync(d, { recursive: true, force: true });
}
