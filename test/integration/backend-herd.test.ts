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
      // HERD_CAP=0 runs the same herd without the cap (what this test guards against: 42–49 of 80 failed, measured).
      r['backendLogin'] = process.env['HERD_CAP'] ? { maxInFlightPerBackend: Number(process.env['HERD_CAP']) } : {};
      r['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      (r['directory'] as { cache: unknown })['cache'] = { ttlMs: 300_000 };
    });
    proxy = await startChildProxy(world, raw, { name: 'herd' });
    const port = proxy.port('imap', 'none');
    await proxy.waitForLog((l) => l['event'] === 'backend_state' && l['backend'] === 'backend-a' && l['to'] === 'up', 30_000);
    const users = [world.users.alice];
    // The user's verdict in the cache: the herd measures the backend, not LDAP.
    for (const u of users) { const r = await imapLogin(port, u.uid, u.password); assert.equal(r.cls, 'ok', r.answer); }

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
    const back = proxy.logs.length;
    const results = await Promise.all(pending);
    const s = summarize(results);
    const downs = proxy.logs.slice(back).filter((l) => l['event'] === 'backend_endpoint_state' && l['backend'] === 'backend-a' && l['to'] === 'down' && /^passive/.test(String(l['reason'])));
    const metrics = (await adminGet(proxy.adminPort!, '/metrics')).body;
    const queued = metricValue(metrics, 'mailproxy_backend_attempts_queued_total{backend="backend-a"}') ?? 0;
    console.log(`      herd of ${HERD}: ${describeSummary(s)}; queued ${queued}; marked down by logins after it returned: ${downs.length}`);
    // Without the cap 42–79 of 80 failed here (greetings past greetingTimeoutMs, the backend marked down by its own
    // logins). With it none did on a quiet machine; the margin is for a 2-core machine shared with other work, where a
    // few logins held since the outage may run out of their 15 s budget behind the queue.
    assert.ok(s.errors <= HERD / 10, `${describeSummary(s)}: ${results.filter((r) => r.cls !== 'ok').map((r) => r.answer).slice(0, 3).join(' | ')}`);
    assert.ok(results.every((r) => r.cls === 'ok' || r.cls === 'unavailable'), 'only OK or the temporary error');
    assert.ok(queued > 0, 'logins waited behind the cap (mailproxy_backend_attempts_queued_total)');
  });
});
