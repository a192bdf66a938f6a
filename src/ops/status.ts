// Owns `mailproxy status -c FILE`: ask the running instance's admin server for /backends, print a table, exit like a Nagios plugin.
// Must not probe backends itself: it reports what the running proxy knows (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
import net from 'node:net';
import type { Config } from '../config/schema.js';
import type { BackendSnapshot } from '../health/health.js';

export const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

export interface StatusOptions {
  print?(line: string): void;
  fetch?: typeof fetch;
  timeoutMs?: number;
  now?: number;
}

/** Base URL of the admin server as a local client reaches it (wildcard binds are asked on loopback). */
export function adminBaseUrl(admin: Pick<Config['admin'], 'address' | 'port'>): string {
  let host = admin.address;
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::' || host === '[::]') host = '::1';
  if (net.isIPv6(host)) host = `[${host}]`;
  return `http://${host}:${admin.port}`;
}

/** Worst state wins: any endpoint or backend down → CRITICAL; anything else not up → WARNING. */
export function exitCodeFor(backends: readonly BackendSnapshot[]): number {
  let code: number = EXIT.OK;
  for (const b of backends) {
    const states = [b.state, ...b.endpoints.map((e) => e.state)];
    if (states.includes('down')) return EXIT.CRITICAL;
    if (states.some((s) => s !== 'up')) code = EXIT.WARNING;
  }
  return code;
}

function age(iso: string | undefined, now: number): string {
  if (!iso) return '-';
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return '-';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** The table: one row per backend endpoint (one row with protocol "-" for a backend without endpoints). */
export function formatTable(backends: readonly BackendSnapshot[], now: number): string[] {
  const rows: string[][] = [['BACKEND', 'PROTOCOL', 'STATE', 'SINCE', 'SESSIONS', 'LAST PROBE']];
  for (const b of backends) {
    const sessions = b.sessions === undefined ? '-' : String(b.sessions);
    const name = b.standby ? `${b.backend} (standby ${b.standby})` : b.backend;
    if (!b.endpoints.length) rows.push([name, '-', b.state, age(b.since, now), sessions, '-']);
    for (const e of b.endpoints) {
      const p = e.lastProbe;
      const probe = !p ? 'none' : p.ok
        ? `ok ${p.latencyMs}ms ${age(p.at, now)}${p.identity ? ` "${p.identity}"` : ''}`
        : `FAIL ${p.failure ?? ''} ${age(p.at, now)}${p.error ? ` (${p.error})` : ''}`;
      rows.push([name, e.protocol, e.state, age(e.since, now), sessions, probe]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

function summary(code: number, backends: readonly BackendSnapshot[]): string {
  const label = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'][code];
  const down = backends.filter((b) => b.state === 'down' || b.endpoints.some((e) => e.state === 'down')).map((b) => b.backend);
  const notUp = backends.filter((b) => b.state !== 'up' && !down.includes(b.backend)).map((b) => `${b.backend} ${b.state}`);
  const parts = [`${backends.length} backends`];
  if (down.length) parts.push(`down: ${down.join(', ')}`);
  if (notUp.length) parts.push(notUp.join(', '));
  return `MAILPROXY ${label} - ${parts.join('; ')}`;
}

export async function runStatus(config: Pick<Config, 'admin'>, opts: StatusOptions = {}): Promise<number> {
  const print = opts.print ?? ((l: string) => console.log(l));
  if (!config.admin.enabled) {
    print('MAILPROXY UNKNOWN - admin server is disabled in this configuration (admin.enabled: false)');
    return EXIT.UNKNOWN;
  }
  const url = `${adminBaseUrl(config.admin)}/backends`;
  let backends: BackendSnapshot[];
  try {
    const res = await (opts.fetch ?? fetch)(url, {
      headers: config.admin.token ? { authorization: `Bearer ${config.admin.token}` } : {},
      signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
    });
    if (res.status === 401) { print(`MAILPROXY UNKNOWN - admin server at ${url} refused the token`); return EXIT.UNKNOWN; }
    if (!res.ok) { print(`MAILPROXY UNKNOWN - admin server at ${url} answered HTTP ${res.status}`); return EXIT.UNKNOWN; }
    const body = (await res.json()) as { backends?: unknown };
    if (!Array.isArray(body.backends)) { print(`MAILPROXY UNKNOWN - unexpected answer from ${url}`); return EXIT.UNKNOWN; }
    backends = body.backends as BackendSnapshot[];
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
    print(`MAILPROXY UNKNOWN - admin server at ${url} unreachable (${cause})`);
    return EXIT.UNKNOWN;
  }
  const code = exitCodeFor(backends);
  print(summary(code, backends));
  for (const line of formatTable(backends, opts.now ?? Date.now())) print(line);
  return code;
}
