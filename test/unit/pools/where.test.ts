// Proves the operators' route explanation (`GET /routes/USER`, `mailproxy where USER`): pool, plain backend, no route, unknown
// user, sessions seen elsewhere; and the admin route and CLI exit codes over a loopback admin server. No backends are reached.
import assert from 'node:assert/strict';
import { configSchema } from '../../../src/config/schema.js';
import type { Account } from '../../../src/directory/directory.js';
import { rankMembers } from '../../../src/directory/pool-route.js';
import { startAdminServer, type AdminDeps } from '../../../src/ops/http.js';
import { SessionRegistry, type SessionInfo } from '../../../src/proxy/sessions.js';
import { PoolRouter } from '../../../src/pools/pool-router.js';
import { explainRoute, runWhere, type RouteExplainDeps } from '../../../src/pools/where.js';

const config = configSchema.parse({
  listeners: [{ protocol: 'imap', port: 143, tls: 'none' }],
  directory: { type: 'static', static: { file: 'x' } },
  routing: { defaultBackend: 'store1' },
  backends: { m1: { host: 'h1' }, m2: { host: 'h2' }, m3: { host: 'h3' }, solo: { host: 'h9', standby: 'm1' } },
  pools: { store1: { members: ['m1', 'm2', { backend: 'm3', weight: 2 }] } },
});
const accounts: Record<string, Account> = {
  pooled: { login: 'pooled', host: 'store1' },
  fallback: { login: 'fallback', host: null },
  plain: { login: 'plain', host: 'solo' },
};

describe('pools: where USER', () => {
  const sessions = new SessionRegistry();
  const pools = new PoolRouter({ config: () => config, sessions });
  const elsewhere: SessionInfo[] = [];
  const deps: RouteExplainDeps = {
    config: () => config,
    directory: () => ({ lookup: async (n: string) => accounts[n] ?? null }),
    pools,
    backendState: (n) => (n === 'solo' ? { state: 'up', since: '2026-01-01T00:00:00.000Z' } : undefined),
    sessionsOf: async (login) => elsewhere.filter((s) => s.user === login),
  };

  it('explains a pool user: hash order with weights and conditions, live sessions seen by other processes', async () => {
    pools.observe('m1', 'up', 0); pools.observe('m2', 'down', 0); pools.observe('m3', 'maintenance', 0);
    const order = rankMembers('pooled', [{ name: 'm1', weight: 1 }, { name: 'm2', weight: 1 }, { name: 'm3', weight: 2 }]);
    const e = await explainRoute(deps, 'pooled');
    assert.ok(e && e.kind === 'pool');
    assert.equal(e.via, 'host attribute');
    assert.deepEqual(e.order.map((o) => o.member), order);
    assert.deepEqual(e.order.find((o) => o.member === 'm3'), { member: 'm3', weight: 2, condition: 'maintenance', since: new Date(0).toISOString() });
    assert.equal(e.member, 'm1');
    assert.equal(e.reason, order[0] === 'm1' ? 'hash' : 'failover');
    // A session on m3 in another worker: the user is draining there.
    elsewhere.push({ id: 'w2-1', protocol: 'imap', client: 'c', user: 'pooled', backend: 'm3', pool: 'store1', phase: 'relay', startedAt: 0 });
    const d = await explainRoute(deps, 'pooled');
    assert.ok(d && d.kind === 'pool');
    assert.deepEqual(d.live.members, ['m3']);
  });

  it('explains the default route, a plain backend, and an unknown user', async () => {
    const f = await explainRoute(deps, 'fallback');
    assert.ok(f && f.kind === 'pool');
    assert.equal(f.via, 'routing.defaultBackend');
    const p = await explainRoute(deps, 'plain');
    assert.deepEqual(p, { kind: 'backend', query: 'plain', login: 'plain', via: 'host attribute', backend: 'solo', state: 'up', since: '2026-01-01T00:00:00.000Z', standby: 'm1', liveSessions: 0 });
    assert.equal(await explainRoute(deps, 'nobody'), undefined);
  });

  it('serves GET /routes/USER and `where` prints it with exit codes 0 / 1 / 2 / 3', async () => {
    const admin: AdminDeps = {
      readiness: () => ({ ready: true, reasons: [] }),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      backends: async () => [],
      setMaintenance: async () => undefined,
      listSessions: async () => [],
      kickSessions: async () => ({ kicked: 0 }),
      routeOf: (u: string) => explainRoute(deps, u),
    };
    const server = await startAdminServer({ deps: admin, token: 't', address: '127.0.0.1', port: 0 });
    try {
      const baseUrl = `http://127.0.0.1:${server.port}`;
      const r = await fetch(`${baseUrl}/routes/pooled`, { headers: { authorization: 'Bearer t' } });
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { pool: string }).pool, 'store1');
      assert.equal((await fetch(`${baseUrl}/routes/pooled`)).status, 401);
      const lines: string[] = [];
      // Live on m3, whose maintenance began long ago: the drain moment has passed, so the move is in progress (exit 2).
      assert.equal(await runWhere('pooled', { baseUrl, token: 't', print: (l) => lines.push(l) }), 2);
      assert.match(lines[0]!, /^pooled: pool store1 → none now \(moving: closing the sessions on m3\)/);
      assert.match(lines[0]!, /live on m3/);
      elsewhere.length = 0;
      assert.equal(await runWhere('pooled', { baseUrl, token: 't', print: (l) => lines.push(l) }), 0);
      assert.equal(await runWhere('nobody', { baseUrl, token: 't', print: () => undefined }), 1);
    } finally {
      await server.close();
    }
    assert.equal(await runWhere('pooled', { baseUrl: 'http://127.0.0.1:1', print: () => undefined, timeoutMs: 1000 }), 3);
  });
});
