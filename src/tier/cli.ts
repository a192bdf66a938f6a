// Owns `mailproxy sessions USER`, `mailproxy kick USER` and `mailproxy routes invalidate USER`: ask the running instance's admin API (which answers
// for the whole tier when `tier:` is set) and print the result. Must not talk to Redis or the directory itself.
import type { Config } from '../config/schema.js';
import { adminBaseUrl } from '../ops/status.js';
import type { KickTarget } from './kick-replay.js';

export interface CliOptions {
  print?(line: string): void;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

interface SessionRow { instance?: string; id: string; protocol: string; user?: string; backend?: string; client: string; since?: string; startedAt?: number }

async function call(config: Pick<Config, 'admin'>, method: 'GET' | 'POST', path: string, o: CliOptions): Promise<{ ok: true; body: unknown } | { ok: false; message: string }> {
  if (!config.admin.enabled) return { ok: false, message: 'admin server is disabled in this configuration (admin.enabled: false)' };
  const url = `${adminBaseUrl(config.admin)}${path}`;
  try {
    const res = await (o.fetch ?? fetch)(url, {
      method,
      headers: config.admin.token ? { authorization: `Bearer ${config.admin.token}` } : {},
      signal: AbortSignal.timeout(o.timeoutMs ?? 5000),
    });
    const text = await res.text();
    if (!res.ok) return { ok: false, message: `admin server at ${url} answered HTTP ${res.status}: ${text.slice(0, 200)}` };
    return { ok: true, body: JSON.parse(text) as unknown };
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
    return { ok: false, message: `admin server at ${url} unreachable (${cause})` };
  }
}

/** One line per session: instance, protocol, backend, client, since. Exit 0 with sessions, 1 without, 3 when the API fails. */
export async function runSessions(config: Pick<Config, 'admin'>, user: string, o: CliOptions = {}): Promise<number> {
  const print = o.print ?? ((l: string) => console.log(l));
  const r = await call(config, 'GET', `/sessions?user=${encodeURIComponent(user)}`, o);
  if (!r.ok) { print(`mailproxy sessions: ${r.message}`); return 3; }
  const sessions = ((r.body as { sessions?: SessionRow[] }).sessions ?? []);
  const rows = [['INSTANCE', 'PROTOCOL', 'BACKEND', 'CLIENT', 'SINCE', 'ID']];
  for (const s of sessions) rows.push([s.instance ?? '(this)', s.protocol, s.backend ?? '-', s.client, s.since ?? (s.startedAt ? new Date(s.startedAt).toISOString() : '-'), s.id]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((x) => x[i]!.length)));
  print(`${sessions.length} session${sessions.length === 1 ? '' : 's'} of ${user}`);
  if (sessions.length) for (const row of rows) print(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  return sessions.length ? 0 : 1;
}

/** Drop USER's cached route and verdict and kick their sessions (everywhere, with a tier). Exit 0 done, 3 when the API fails. */
export async function runInvalidate(config: Pick<Config, 'admin'>, user: string, o: CliOptions = {}): Promise<number> {
  const print = o.print ?? ((l: string) => console.log(l));
  const r = await call(config, 'POST', `/routes/invalidate?user=${encodeURIComponent(user)}`, o);
  if (!r.ok) { print(`mailproxy routes invalidate: ${r.message}`); return 3; }
  const b = r.body as { dropped?: number; kicked?: number; tier?: boolean };
  print(`route of ${user} invalidated here (${b.dropped ?? 0} cache entries, ${b.kicked ?? 0} sessions closed); ${b.tier ? 'sent to every instance of the tier' : 'this instance only (no tier, or Redis unreachable)'}`);
  return 0;
}

/** Close USER's (or a backend's) sessions here and, with a tier, everywhere. Exit 0 done (also while pending tier-wide), 3 when the API fails. */
export async function runKick(config: Pick<Config, 'admin'>, filter: KickTarget, o: CliOptions = {}): Promise<number> {
  const print = o.print ?? ((l: string) => console.log(l));
  const q = new URLSearchParams({ ...(filter.user ? { user: filter.user } : {}), ...(filter.backend ? { backend: filter.backend } : {}) });
  const r = await call(config, 'POST', `/sessions/kick?${q.toString()}`, o);
  if (!r.ok) { print(`mailproxy kick: ${r.message}`); return 3; }
  const b = r.body as { kicked?: number; tier?: string };
  const what = `${filter.user ? ` of ${filter.user}` : ''}${filter.backend ? ` on ${filter.backend}` : ''}`;
  const where = b.tier === 'sent' ? 'sent to every instance of the tier'
    : b.tier === 'pending' ? 'pending tier-wide: Redis is unreachable; the other instances get the kick when it answers (sessions started before now)'
      : 'this instance only (no tier)';
  print(`closed ${b.kicked ?? 0} sessions${what} here; ${where}`);
  return 0;
}
