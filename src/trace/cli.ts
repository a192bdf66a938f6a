// Owns `mailproxy trace USER --minutes N` (and `trace` alone: list): ask the running instance's admin API, print the answer.
// Must not trace anything itself: the proxy does; exit 0 done, 3 admin API unreachable, disabled or refusing, 64 bad request.
import type { Config } from '../config/schema.js';
import { adminBaseUrl } from '../ops/status.js';

export interface TraceCliOptions {
  print?(line: string): void;
  timeoutMs?: number;
}

/** POST /trace {user, minutes} (or GET /trace without a user) on the admin API of `config`; returns the exit code. */
export async function runTrace(config: Pick<Config, 'admin'>, user: string | undefined, minutes: number | undefined, opts: TraceCliOptions = {}): Promise<number> {
  const print = opts.print ?? ((l: string) => console.log(l));
  if (!config.admin.enabled) { print('trace: the admin API is disabled in this configuration (admin.enabled: false)'); return 3; }
  const url = `${adminBaseUrl(config.admin)}/trace`;
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(config.admin.token ? { authorization: `Bearer ${config.admin.token}` } : {}) };
  let res: Response;
  try {
    res = await fetch(url, {
      method: user === undefined ? 'GET' : 'POST',
      headers,
      ...(user === undefined ? {} : { body: JSON.stringify({ user, minutes: minutes ?? 10 }) }),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
    });
  } catch (e) {
    print(`trace: admin API at ${url} unreachable (${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name})`);
    return 3;
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status === 400) { print(`trace: ${String(body['error'] ?? 'bad request')}`); return 64; }
  if (!res.ok) { print(`trace: admin API at ${url} answered HTTP ${res.status}${body['error'] ? ` (${String(body['error'])})` : ''}`); return 3; }
  if (user === undefined) {
    const traces = Array.isArray(body['traces']) ? body['traces'] as Array<{ user: string; until: string }> : [];
    if (!traces.length) print('no active traces');
    for (const t of traces) print(`${t.user} until ${t.until}`);
    return 0;
  }
  print(body['active']
    ? `tracing ${String(body['user'])} until ${String(body['until'])} in ${String(body['processes'])} process(es); records have "trace": true`
    : `trace of ${String(body['user'])} stopped`);
  return 0;
}
