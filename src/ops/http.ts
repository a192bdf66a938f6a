// Owns the admin HTTP surface (healthz, readyz, metrics, backends, maintenance, sessions, kick, route invalidation): routing, bearer auth, JSON errors.
// Must not hold state or reach into sessions/health directly: everything goes through AdminDeps callbacks (IPC-routable in cluster mode).
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { SessionInfo } from '../proxy/sessions.js';
import { isTrustedSource } from '../core/proxy-header.js';
import type { BackendSnapshot } from '../health/health.js';
import { parseTraceRequest } from '../trace/table.js';
import type { TraceAnswer } from '../trace/control.js';

/** This process's own readiness: never LDAP or backend health (a shared outage must not empty the pool). */
export interface Readiness {
  ready: boolean;
  /** Why not ready (empty when ready): "config not loaded", "listeners not bound", "draining", … */
  reasons: string[];
  draining?: boolean;
  maintenance?: boolean;
}

/** `startedBefore` (ms): only sessions started at or before it (a kick that reaches this instance late); never from the API. */
export interface SessionFilter { user?: string; backend?: string; startedBefore?: number }

/** A kick's answer: sessions closed here, and with a tier whether the others were told now or will be once Redis answers. */
export interface KickAnswer { kicked: number; tier?: 'sent' | 'pending'; message?: string }

export interface AdminDeps {
  readiness(): Readiness | Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
  backends(): Promise<BackendSnapshot[]>;
  /** Undefined when the backend is unknown (404). With a tier: whether the others have it or it is pending. */
  setMaintenance(backend: string, enabled: boolean): Promise<(BackendSnapshot & Pick<KickAnswer, 'tier' | 'message'>) | undefined>;
  listSessions(filter: SessionFilter): Promise<SessionInfo[]>;
  /** How many sessions were kicked. */
  kickSessions(filter: SessionFilter): Promise<KickAnswer>;
  /** Trace on demand: log `user`'s sessions in full detail for `minutes` (0 stops) on every process. */
  setTrace?(user: string, minutes: number): Promise<TraceAnswer>;
  /** The active traces. */
  listTraces?(): Promise<Array<{ user: string; until: string }>>;
  /** GET /routes/USER: where the user goes now and why (pools: hash order, health, live sessions, pending move); undefined = unknown user. */
  routeOf?(user: string): Promise<unknown>;
  /** Drop a user's cached route and verdict and kick their sessions (everywhere, with a tier); absent = 404. */
  invalidateRoute?(user: string): Promise<{ user: string; dropped: number; kicked: number; tier: boolean }>;
}

export interface AdminServerOptions {
  deps: AdminDeps;
  /** Bearer token required for everything but /healthz; unset = no auth (keep the server on loopback then). */
  token?: string;
  logger?: Logger;
  maxBodyBytes?: number;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) { super(message); }
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** Constant-time token check (hashing first makes lengths equal and hides the token's length). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  const given = createHash('sha256').update(m?.[1] ?? '').digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want) && !!m;
}

/** Parse an on/off switch as given in a query string or JSON body. */
export function parseSwitch(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v !== 'string') return undefined;
  const s = v.trim().toLowerCase();
  if (['on', 'true', '1', 'yes', 'enable', 'enabled'].includes(s)) return true;
  if (['off', 'false', '0', 'no', 'disable', 'disabled'].includes(s)) return false;
  return undefined;
}

export function createAdminHandler(opts: AdminServerOptions): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const log = opts.logger ?? silentLogger;
  const maxBody = opts.maxBodyBytes ?? 64 * 1024;
  return (req, res) => {
    handle(req, res).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      if (status >= 500) log.error({ event: 'admin_error', method: req.method, path: pathOf(req), err: e instanceof Error ? e.message : String(e) }, 'admin request failed');
      sendJson(res, status, { error: status >= 500 ? 'internal error' : (e as Error).message }, e instanceof HttpError ? e.headers : {});
    });
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try { url = new URL(req.url ?? '/', 'http://admin.invalid'); } catch { throw new HttpError(400, 'bad request target'); }
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET';

    if (path === '/healthz') {
      allow(method, ['GET']);
      return sendJson(res, 200, { status: 'ok' });
    }
    if (opts.token !== undefined && !tokenMatches(req.headers.authorization, opts.token)) {
      throw new HttpError(401, 'unauthorized', { 'www-authenticate': 'Bearer realm="mailproxy"' });
    }
    if (path === '/readyz') {
      allow(method, ['GET']);
      const r = await opts.deps.readiness();
      return sendJson(res, r.ready ? 200 : 503, { ready: r.ready, reasons: r.reasons, ...(r.draining !== undefined ? { draining: r.draining } : {}), ...(r.maintenance !== undefined ? { maintenance: r.maintenance } : {}) });
    }
    if (path === '/metrics') {
      allow(method, ['GET']);
      const m = await opts.deps.metrics();
      res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' });
      res.end(m.body);
      return;
    }
    if (path === '/backends') {
      allow(method, ['GET']);
      return sendJson(res, 200, { backends: await opts.deps.backends() });
    }
    const bm = /^\/backends\/([^/]+)(\/maintenance)?$/.exec(path);
    if (bm) {
      const name = decodeSegment(bm[1]!);
      if (!bm[2]) {
        allow(method, ['GET']);
        const b = (await opts.deps.backends()).find((x) => x.backend === name);
        if (!b) throw new HttpError(404, `unknown backend '${name}'`);
        return sendJson(res, 200, b);
      }
      allow(method, ['POST']);
      const body = await readJson(req, maxBody);
      const raw = url.searchParams.get('enabled') ?? body.enabled;
      const enabled = parseSwitch(raw);
      if (enabled === undefined) throw new HttpError(400, 'give enabled: true/false (JSON body) or ?enabled=on|off');
      const b = await opts.deps.setMaintenance(name, enabled);
      if (!b) throw new HttpError(404, `unknown backend '${name}'`);
      log.warn({ event: 'admin_maintenance', backend: name, enabled }, `maintenance ${enabled ? 'on' : 'off'} for ${name}`);
      return sendJson(res, 200, b);
    }
    if (path === '/sessions') {
      allow(method, ['GET']);
      const sessions = await opts.deps.listSessions(filterFrom(url.searchParams.get('user'), url.searchParams.get('backend')));
      return sendJson(res, 200, { count: sessions.length, sessions });
    }
    if (path === '/sessions/kick') {
      allow(method, ['POST']);
      const body = await readJson(req, maxBody);
      const filter = filterFrom(url.searchParams.get('user') ?? body.user, url.searchParams.get('backend') ?? body.backend);
      if (!filter.user && !filter.backend) throw new HttpError(400, 'give user or backend');
      const answer = await opts.deps.kickSessions(filter);
      log.warn({ event: 'admin_kick', ...filter, kicked: answer.kicked, ...(answer.tier ? { tier: answer.tier } : {}) }, `kicked ${answer.kicked} sessions`);
      return sendJson(res, 200, answer);
    }
    if (path === '/trace') {
      const { setTrace, listTraces } = opts.deps;
      if (!setTrace || !listTraces) throw new HttpError(404, 'trace is not available here');
      allow(method, ['GET', 'POST']);
      if (method === 'GET') return sendJson(res, 200, { traces: await listTraces() });
      const request = parseTraceRequest(await readJson(req, maxBody));
      if (typeof request === 'string') throw new HttpError(400, request);
      return sendJson(res, 200, await setTrace(request.user, request.minutes));
    }
    if (path === '/routes/invalidate') {
      allow(method, ['POST']);
      const body = await readJson(req, maxBody);
      const user = url.searchParams.get('user') ?? body.user;
      if (typeof user !== 'string' || !user.trim() || user.length > 512) throw new HttpError(400, 'give user (a login name or address)');
      if (!opts.deps.invalidateRoute) throw new HttpError(404, 'route invalidation is not available here');
      const r = await opts.deps.invalidateRoute(user.trim());
      log.warn({ event: 'admin_route_invalidate', ...r }, `route of ${r.user} invalidated`);
      return sendJson(res, 200, r);
    }
    const rm = /^\/routes\/([^/]+)$/.exec(path);
    if (rm && method === 'GET' && opts.deps.routeOf) {
      const user = decodeSegment(rm[1]!);
      const r = await opts.deps.routeOf(user);
      if (r === undefined) throw new HttpError(404, `unknown user '${user.slice(0, 256)}'`);
      return sendJson(res, 200, r);
    }
    throw new HttpError(404, 'not found');
  }
}

/** Create and bind the admin server; resolves once listening. */
export async function startAdminServer(opts: AdminServerOptions & { address: string; port: number }): Promise<{ server: http.Server; address: string; port: number; close(): Promise<void> }> {
  const server = http.createServer(createAdminHandler(opts));
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, () => { server.off('error', reject); resolve(); });
  });
  const a = server.address() as AddressInfo;
  if (opts.token === undefined && !isLoopback(a.address)) {
    (opts.logger ?? silentLogger).warn({ address: a.address, port: a.port }, 'admin HTTP reachable beyond loopback without admin.token: anyone who reaches it can set maintenance and kick sessions');
  }
  return {
    server,
    address: a.address,
    port: a.port,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/** 127.0.0.0/8, ::1 and the IPv4-mapped form; the unspecified addresses (0.0.0.0, ::) are not loopback. */
export function isLoopback(address: string): boolean {
  return isTrustedSource(address, LOOPBACK);
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) throw new HttpError(405, 'method not allowed', { allow: methods.join(', ') + (methods.includes('GET') ? ', HEAD' : '') });
}

/** Longest user or backend name a filter takes: what the tier's broadcast carries (a longer one would be kicked here only). */
const MAX_FILTER_NAME = 512;

function filterFrom(user: unknown, backend: unknown): SessionFilter {
  const f: SessionFilter = {};
  if (user !== undefined && user !== null) {
    if (typeof user !== 'string') throw new HttpError(400, 'user must be a string');
    if (user.length > MAX_FILTER_NAME) throw new HttpError(400, `user longer than ${MAX_FILTER_NAME} characters`);
    if (user) f.user = user;
  }
  if (backend !== undefined && backend !== null) {
    if (typeof backend !== 'string') throw new HttpError(400, 'backend must be a string');
    if (backend.length > MAX_FILTER_NAME) throw new HttpError(400, `backend longer than ${MAX_FILTER_NAME} characters`);
    if (backend) f.backend = backend;
  }
  return f;
}

function decodeSegment(s: string): string {
  try { return decodeURIComponent(s); } catch { throw new HttpError(400, 'bad path encoding'); }
}

function pathOf(req: http.IncomingMessage): string {
  return (req.url ?? '').split('?')[0]!.slice(0, 200);
}

async function readJson(req: http.IncomingMessage, max: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) throw new HttpError(413, 'body too large', { connection: 'close' });
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let v: unknown;
  try { v = JSON.parse(text); } catch { throw new HttpError(400, 'body is not valid JSON'); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, 'body must be a JSON object');
  return v as Record<string, unknown>;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) { res.destroy(); return; }
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': JSON_TYPE, 'cache-control': 'no-store', ...headers });
  res.end(text);
}
