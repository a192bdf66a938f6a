// Proves the per-backend cap on backend connection attempts against a real *unpooled* Dovecot (its default: one login
// process forked per connection): logins held through an outage all reach the backend at once when it returns, and
// none may fail. Child proxy (its own CPU, like production), real slapd, Dovecot's default login service.
// Must not test the limiter's queue rules (unit tests) or ride-through itself (backend-faults.test.ts).
import assert from 'node:assert/strict';
import { startWorld, type World } from './harness/world.js';
import { adminGet, metricValue, startChildProxy, type ChildProxy } from './child-proxy.js';
import { worldRawConfig } from './proxy-fixture.js';
import { imapLogin, summarize, describeSummary, type LoginResult } from './login-stream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HERD = 80;

describe('a herd of held logins against an unpooled Dovecot coming back (child proxy, real Dovecot and slapd)', function () {
  this.timeout(120_000);
  let world: World;
  let proxy: ChildProxy | undefined;

  before(async () => { world = await startWorld(); });
  after(async () => {
    await proxy?.stop();
    await world?.stop();
  });

  it(`${HERD} logins held through an outage all log in when the backend returns (default cap and queue)`, async () => {
    const raw = worldRawConfig(world, (r) => {
      r['log'] = { level: 'info' };
      r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
      delete (r['backends'] as Record<string, unknown>)['backend-dead'];
      // Production defaults for health and the backend login (budget, greeting timeout, ride-through), only probed faster.
      r['health'] = { enabled: true, intervalMs: 500, fastIntervalMs: 200 };
      r['backendLogin'] = {};
      r['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      (r['directory'] as { cache: unknown })['cache'] = { ttlMs: 300_000 };
    });
    proxy = await startChildProxy(world, raw, { name: 'herd' });
    const port = proxy.port('imap', 'none');
    await proxy.waitForLog((l) => l['event'] === 'backend_state' && l['backend'] === 'backend-a' && l['to'] === 'up', 30_000);
    const users = [world.users.alice];
    // The user's verdict in the cache: the herd measures the backend, not LDAP.
    for (const u of users) { const r = await imapLogin(port, u.uid, u.password); assert.equal(r.cls, 'ok', r.answer); }

    const from = proxy.logs.length;
    await world.backends.a.stop();
    // Logins arriving during the outage ride through (retrying within their budget) and are all waiting when it returns.
    const pending: Array<Promise<LoginResult>> = [];
    for (let i = 0; i < HERD; i++) {
      const u = users[i % users.length]!;
      pending.push(imapLogin(port, u.uid, u.password, 60_000));
      if (i % 20 === 19) await sleep(50);
    }
    await sleep(1500);
    await world.backends.a.start();
    const results = await Promise.all(pending);
    const s = summarize(results);
    const after = proxy.logs.slice(from);
    const downs = after.filter((l) => l['event'] === 'backend_endpoint_state' && l['backend'] === 'backend-a' && l['to'] === 'down' && /greeting|hang/.test(String(l['reason'])));
    const metrics = (await adminGet(proxy.adminPort!, '/metrics')).body;
    const queued = metricValue(metrics, 'mailproxy_backend_attempts_queued_total{backend="backend-a"}') ?? 0;
    console.log(`      herd of ${HERD}: ${describeSummary(s)}; queued ${queued}; marked down for slow greetings: ${downs.length}`);
    if (process.env['HERD_DEBUG']) { const seen = new Map<string, number>(); for (const l of after) { if (l['msg'] === 'login failed' || String(l['event']).includes('state')) { const k = JSON.stringify({ m: l['msg'], e: l['event'], p: l['protocol'], to: l['to'], r: String(l['reason'] ?? '').slice(0, 90), d: String(l['detail'] ?? l['err'] ?? '').replace(/\d+/g, '#').slice(0, 120) }); seen.set(k, (seen.get(k) ?? 0) + 1); } } for (const [k, v] of seen) console.log(v, k); }
    assert.deepEqual(results.filter((r) => r.cls !== 'ok').map((r) => r.answer).slice(0, 5), [], describeSummary(s));
    assert.equal(downs.length, 0, JSON.stringify(downs.slice(0, 2)));
    assert.ok(queued > 0, 'logins waited behind the cap (mailproxy_backend_attempts_queued_total)');
  });
});
