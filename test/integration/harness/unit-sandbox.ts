// Owns running a program under the seccomp part of a systemd unit without systemd: SystemCallFilter= groups expanded by
// `systemd-analyze syscall-filter`, SystemCallErrorNumber=, RestrictAddressFamilies= (other families: EAFNOSUPPORT).
// Must not assert; it loads the filters through libseccomp (python3 ctypes) and execs the program. Nothing else of the unit.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findProgram } from './binaries.js';

/** Every value of KEY= in a unit's text (a key may repeat). */
export function unitValues(unit: string, key: string): string[] {
  return unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1).trim());
}

/** The syscall names a SystemCallFilter= value allows, groups (`@system-service`) expanded recursively. */
function expandFilter(systemdAnalyze: string, names: string[], seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  for (const name of names) {
    if (!name.startsWith('@')) { out.add(name); continue; }
    if (seen.has(name)) continue;
    seen.add(name);
    const text = execFileSync(systemdAnalyze, ['syscall-filter', name], { encoding: 'utf8' });
    const members = text.split('\n').slice(1).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const s of expandFilter(systemdAnalyze, members, seen)) out.add(s);
  }
  return out;
}

// Filter 2 (families) is loaded first: once filter 1 is in place, seccomp() itself is not allowed any more.
const LOADER = String.raw`
import ctypes, errno, os, socket, sys
allowed, fams, err, argv = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4:]
lib = ctypes.CDLL('libseccomp.so.2')
class Cmp(ctypes.Structure):
    _fields_ = [('arg', ctypes.c_uint), ('op', ctypes.c_int), ('a', ctypes.c_uint64), ('b', ctypes.c_uint64)]
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
ERRNO = lambda e: 0x00050000 | (e & 0xffff)
ALLOW = 0x7fff0000
keep = {getattr(socket, f, None) or {'AF_NETLINK': 16}[f] for f in fams}
f2 = lib.seccomp_init(ALLOW)
sock = lib.seccomp_syscall_resolve_name(b'socket')
for fam in range(64):
    if fam not in keep and lib.seccomp_rule_add_array(f2, ERRNO(errno.EAFNOSUPPORT), sock, 1, ctypes.byref(Cmp(0, 4, fam, 0))) != 0: sys.exit('rule')
names = open(allowed).read().split()
f1 = lib.seccomp_init(ERRNO(getattr(errno, err)) if names else ALLOW)
for name in names:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0: lib.seccomp_rule_add_array(f1, ALLOW, nr, 0, None)
if lib.seccomp_load(f2) != 0 or lib.seccomp_load(f1) != 0: sys.exit('unit-sandbox: seccomp_load failed')
os.execvp(argv[0], argv)
`;

/**
 * The command prefix that runs a program under `unit`'s SystemCallFilter and RestrictAddressFamilies (files go to
 * `dir`). Throws naming the Debian package when python3 or systemd-analyze is missing (never a silent skip).
 */
export function unitSandboxPrefix(unit: string, dir: string): string[] {
  const python = findProgram('python3');
  if (!python) throw new Error('python3 not found: install the Debian package python3 (the unit sandbox loads seccomp filters with it)');
  const analyze = findProgram('systemd-analyze');
  if (!analyze) throw new Error('systemd-analyze not found: install the Debian package systemd');
  const filter = unitValues(unit, 'SystemCallFilter').flatMap((v) => v.split(/\s+/));
  if (filter.some((f) => f.startsWith('~'))) throw new Error('unit-sandbox: deny-list SystemCallFilter= is not supported');
  const allowed = join(dir, 'allowed-syscalls.txt');
  writeFileSync(allowed, [...expandFilter(analyze, filter)].join('\n'));
  const loader = join(dir, 'unit-sandbox.py');
  writeFileSync(loader, LOADER);
  const families = unitValues(unit, 'RestrictAddressFamilies').join(' ');
  const errno = unitValues(unit, 'SystemCallErrorNumber')[0] ?? 'EPERM';
  return [python, loader, allowed, families, errno];
}
