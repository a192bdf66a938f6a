// Owns locating the external programs and data files the test world needs, naming the Debian package for each.
// Must not install anything or skip tests: a missing piece is a thrown Error naming the package.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface Requirement {
  /** Program name looked up on PATH (+ sbin dirs), or an absolute path to a file. */
  name: string;
  pkg: string;
  executable: boolean;
}

export const REQUIREMENTS: Requirement[] = [
  { name: 'slapd', pkg: 'slapd', executable: true },
  { name: 'slapadd', pkg: 'slapd', executable: true },
  { name: '/usr/lib/ldap/back_mdb.so', pkg: 'slapd', executable: false },
  { name: '/etc/ldap/schema/misc.schema', pkg: 'slapd', executable: false },
  { name: 'dovecot', pkg: 'dovecot-core', executable: true },
  { name: '/usr/lib/dovecot/imap', pkg: 'dovecot-imapd', executable: true },
  { name: '/usr/lib/dovecot/pop3', pkg: 'dovecot-pop3d', executable: true },
  { name: '/usr/lib/dovecot/lmtp', pkg: 'dovecot-lmtpd', executable: true },
  { name: '/usr/lib/dovecot/submission', pkg: 'dovecot-submissiond', executable: true },
  { name: 'openssl', pkg: 'openssl', executable: true },
];

export const INSTALL_HINT =
  'apt-get update && apt-get install -y slapd ldap-utils dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond openssl ' +
  '(or run scripts/ensure-packages.sh as root)';

function searchDirs(pathEnv: string | undefined): string[] {
  const dirs = (pathEnv ?? '').split(delimiter).filter((d) => d.length > 0);
  for (const extra of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(extra)) dirs.push(extra);
  return dirs;
}

function usable(path: string, executable: boolean): boolean {
  try {
    accessSync(path, executable ? constants.X_OK : constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** Absolute path of a program, or undefined. Programs in /usr/sbin are found even when PATH lacks it. */
export function findProgram(name: string, pathEnv: string | undefined = process.env['PATH']): string | undefined {
  if (name.startsWith('/')) return usable(name, true) ? name : undefined;
  for (const dir of searchDirs(pathEnv)) {
    const candidate = join(dir, name);
    if (usable(candidate, true)) return candidate;
  }
  return undefined;
}

/**
 * Resolve every requirement; throws one Error listing each missing piece and its Debian package.
 * `reqs` and `pathEnv` are parameters so the failure message itself can be tested.
 */
export function requireBinaries(reqs: Requirement[] = REQUIREMENTS, pathEnv: string | undefined = process.env['PATH']): Map<string, string> {
  const found = new Map<string, string>();
  const missing: string[] = [];
  for (const req of reqs) {
    const path = req.name.startsWith('/')
      ? usable(req.name, req.executable)
        ? req.name
        : undefined
      : findProgram(req.name, pathEnv);
    if (path === undefined) missing.push(`${req.name} (Debian package ${req.pkg})`);
    else found.set(req.name, path);
  }
  if (missing.length > 0) {
    throw new Error(`integration test world cannot start; missing: ${missing.join(', ')}. Install with: ${INSTALL_HINT}`);
  }
  return found;
}
