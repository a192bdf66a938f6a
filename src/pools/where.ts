// Owns the operator's answer to "where does USER go now, and why": directory lookup, then the pool explanation or the plain host route.
// Must not change anything (no kicks, no cache writes beyond the directory's own); `GET /routes/USER` and `mailproxy where` show it.
import type { Config } from '../config/schema.js';
import type { Directory } from '../directory/directory.js';
import type { SessionInfo } from '../proxy/sessions.js';
import type { PoolRouter, WhereReport } from './pool-router.js';

export interface RouteExplainDeps {
  config(): Pick<Config, 'routing' | 'backends' | 'pools'>;
  directory(): Pick<Directory, 'lookup'>;
  pools: Pick<PoolRouter, 'isPool' | 'where'>;
  /** Folded health state of a backend, for plain routes. */
  backendState(name: string): { state: string; since: string } | undefined;
  /** Live sessions of a login anywhere this instance can see (a cluster primary asks its workers). */
  sessionsOf(login: string): Promise<SessionInfo[]>;
}

export type RouteExplanation =
  | ({ kind: 'pool'; query: string; login: string; via: 'host attribute' | 'routing.defaultBackend' } & WhereReport)
  | { kind: 'backend'; query: string; login: string; via: 'host attribute' | 'routing.defaultBackend'; backend: string; state: string; since?: string; standby?: string; liveSessions: number }
  | { kind: 'none'; query: string; login: string; reason: string };

/** Undefined when the directory does not know the user. */
export async function explainRoute(deps: RouteExplainDeps, query: string): Promise<RouteExplanation | undefined> {
  const account = await deps.directory().lookup(query);
  if (!account) return undefined;
  const config = deps.config();
  const host = account.host?.trim();
  const name = host || config.routing.defaultBackend;
  const via = host ? 'host attribute' as const : 'routing.defaultBackend' as const;
  if (!name) return { kind: 'none', query, login: account.login, reason: 'no host attribute and no routing.defaultBackend: logins get a temporary failure' };
  const sessions = await deps.sessionsOf(account.login);
  if (deps.pools.isPool(name)) {
    const elsewhere = sessions.filter((s) => s.pool === name && s.backend && s.phase !== 'prelogin').map((s) => s.backend!);
    return { kind: 'pool', query, login: account.login, via, ...(await deps.pools.where(name, account.login, elsewhere)) };
  }
  const st = deps.backendState(name);
  const standby = config.backends[name]?.standby;
  return {
    kind: 'backend', query, login: account.login, via, backend: name, state: st?.state ?? 'unknown',
    ...(st ? { since: st.since } : {}), ...(standby ? { standby } : {}),
    liveSessions: sessions.filter((s) => s.backend === name && s.phase !== 'prelogin').length,
  };
}

export interface WhereCliOptions {
  print?(line: string): void;
  fetch?: typeof fetch;
  timeoutMs?: number;
  baseUrl: string;
  token?: string;
}

/** `mailproxy where USER`: ask the running instance; exit 0 routed, 1 unknown user, 2 no member serves now (or a move is in progress), 3 no answer. */
export async function runWhere(user: string, o: WhereCliOptions): Promise<number> {
  const print = o.print ?? ((l: string) => console.log(l));
  const url = `${o.baseUrl}/routes/${encodeURIComponent(user)}`;
  try {
    const res = await (o.fetch ?? fetch)(url, { headers: o.token ? { authorization: `Bearer ${o.token}` } : {}, signal: AbortSignal.timeout(o.timeoutMs ?? 5000) });
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.status === 404) { print(`unknown user ${user}`); return 1; }
    if (!res.ok) { print(`admin server at ${url} answered HTTP ${res.status}${body['error'] ? `: ${String(body['error'])}` : ''}`); return 3; }
    print(summaryLine(body as RouteExplanation));
    print(JSON.stringify(body, null, 2));
    const e = body as RouteExplanation;
    return e.kind === 'none' || (e.kind === 'pool' && e.member === null) ? 2 : 0;
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    print(`admin server at ${url} unreachable (${cause})`);
    return 3;
  }
}

function summaryLine(e: RouteExplanation): string {
  if (e.kind === 'none') return `${e.login}: no route (${e.reason})`;
  if (e.kind === 'backend') return `${e.login}: backend ${e.backend} (${e.via}), ${e.state}, ${e.liveSessions} live session(s)`;
  const move = e.pendingMove ? `; moves to ${e.pendingMove.to} at ${e.pendingMove.at} (${e.pendingMove.reason})` : '';
  return `${e.login}: pool ${e.pool} → ${e.member ?? 'none now'} (${e.reason}); hash order ${e.order.map((o) => `${o.member}[${o.condition}]`).join(' > ')} (${e.conditions} view); live on ${e.live.members.join(', ') || 'nothing'} (${e.live.source})${move}`;
}
