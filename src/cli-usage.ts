// Owns the command line's help text and exit codes: the one place they are written (README "Exit codes" repeats
// EXIT_CODES verbatim, a test compares them). Must not parse arguments or run commands (main.ts does).
import { readFileSync } from 'node:fs';

export const EXIT_CODES = `exit codes:
  0   success: config valid, user found, every backend up, trace started, stopped or listed, sessions listed,
      sessions kicked (also while pending tier-wide), route invalidated
  1   lookup, where: no such user; sessions: the user has none; status: a backend suspect, unknown or in
      maintenance; start: failed to start
  2   status: a backend is down
  3   status, trace, sessions, kick, routes, where: the admin API is unreachable, disabled or refused the request
  64  usage error: unknown command or option, missing argument or -c FILE
  75  lookup: the directory is temporarily unavailable
  78  the configuration file is invalid (each problem printed as file:line:col: key: message)`;

export const USAGE = `usage: mailproxy <command> [options]

commands:
  start -c FILE          run the proxy (SIGHUP re-reads FILE, SIGTERM drains and exits)
  check-config -c FILE   validate FILE and the files it names; print every problem and exit
  lookup USER -c FILE    show what the directory says about USER (no password)
  status -c FILE         print the backend table from the running proxy's admin API (a Nagios-style check)
  trace USER -c FILE [--minutes N]
                         log USER's sessions in full detail (credentials redacted) for N minutes (default 10,
                         0 stops) on every worker of the running proxy; without USER: list active traces
  schema                 print the configuration's JSON Schema (editor completion and checks)
  sessions USER -c FILE  list USER's sessions (on every instance of the tier, with tier:)
  kick USER -c FILE [--backend NAME]
                         close USER's sessions (or all on backend NAME) with the protocol's goodbye, tier-wide
                         (with tier:, also pending until Redis answers)
  routes invalidate USER -c FILE
                         drop USER's cached route and verdict and close their sessions (tier-wide)
  where USER -c FILE     which backend (pool member) serves USER now and why, from the running instance

options:
  -c, --config FILE      the configuration file (default: the MAILPROXY_CONFIG environment variable)
  -h, --help             print this help and exit 0
  -m, --minutes N        trace: how long (minutes, at most 1440)
  -b, --backend NAME     kick: only sessions on this backend
  -V, --version          print the version and exit 0

${EXIT_CODES}`;

/** package.json's version (dist/src/cli-usage.js → ../../package.json, in the repository and the image). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}
