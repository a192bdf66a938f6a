// Proves trace on demand's operator surface on a loopback admin server: POST /trace starts, renews and stops a trace in
// the process's table, GET /trace lists it, bad bodies get 400, the token is required; `mailproxy trace` (runTrace)
// maps the answers to its exit codes. Sessions are not involved (the integration test traces real ones).
import assert from 'node:assert/strict';
import { HealthMonitor } from '../../../src/health/health.js';
import { localAdminDeps } from '../../../src/ops/admin-local.js';
import { startAdminServer } from '../../../src/ops/http.js';
import { SessionRegistry } from '../../../src/proxy/sessions.js';
import { silentLogger } from '../../../src/log.js';
import { TraceTable } from '../../../src/trace/table.js';
import { TraceControl } from '../../../src/trace/control.js';
import { runTrace } from '../../../src/trace/cli.js';
import { FakeClock } from '../health/fake-clock.js';
import { testConfig } from '../health/helpers.js';

describe('trace on the admin API and `mailproxy trace`', () => {
  const table = new TraceTable();
  const spread: number[] = [];
  const control = new TraceControl(table, silentLogger, async (list) => { spread.push(list.length); return 3; });
  const token = 'tr4ce-token';
  let server: Awaited<ReturnType<typeof startAdminServer>>;
  let port = 0;

  before(async () => {
    const config = testConfig();
    const deps = localAdminDeps({ monitor: new HealthMonitor({ config, clock: new FakeClock(), hooks: { fire: async () => undefined } }), sessions: new SessionRegistry(), readiness: () => ({ ready: true, reasons: [] }), trace: control });
    server = await startAdminServer({ deps, token, address: '127.0.0.1', port: 0 });
    port = server.port;
  });
  after(async () => { control.close(); await server.close(); });

  const admin = (tok = token) => ({ admin: { ...testConfig().admin, enabled: true, address: '127.0.0.1', port, token: tok } });
  const post = (body: unknown, tok = token) => fetch(`http://127.0.0.1:${port}/trace`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('POST starts a trace in the table and spreads the list; GET lists it; minutes 0 stops it', async () => {
    const r = await post({ user: 'Alice', minutes: 5 });
    assert.equal(r.status, 200);
    const body = await r.json() as { user: string; until: string; active: boolean; processes: number };
    assert.equal(body.user, 'Alice');
    assert.equal(body.active, true);
    assert.equal(body.processes, 3);
    assert.ok(Math.abs(Date.parse(body.until) - (Date.now() + 5 * 60_000)) < 10_000);
    assert.ok(table.match('alice'));
    const list = await (await fetch(`http://127.0.0.1:${port}/trace`, { headers: { authorization: `Bearer ${token}` } })).json() as { traces: Array<{ user: string }> };
    assert.deepEqual(list.traces.map((t) => t.user), ['Alice']);
    const stop = await (await post({ user: 'alice', minutes: 0 })).json() as { active: boolean };
    assert.equal(stop.active, false);
    assert.equal(table.match('alice'), undefined);
    assert.deepEqual(spread, [1, 0]);
  });

  it('refuses a bad body (400) and a missing token (401)', async () => {
    assert.equal((await post({ user: '', minutes: 5 })).status, 400);
    assert.equal((await post({ user: 'a', minutes: 99999 })).status, 400);
    assert.equal((await post({ user: 'a', minutes: 5 }, 'wrong')).status, 401);
  });

  it('runTrace: 0 when started, stopped or listed; 64 for a bad request; 3 for a refused token or no admin API', async () => {
    const lines: string[] = [];
    const print = (l: string) => lines.push(l);
    assert.equal(await runTrace(admin(), 'bob', 2, { print }), 0);
    assert.match(lines.at(-1) ?? '', /^tracing bob until \S+ in 3 process\(es\)/);
    assert.equal(await runTrace(admin(), undefined, undefined, { print }), 0);
    assert.match(lines.at(-1) ?? '', /^bob until /);
    assert.equal(await runTrace(admin(), 'bob', 0, { print }), 0);
    assert.equal(lines.at(-1), 'trace of bob stopped');
    assert.equal(await runTrace(admin(), 'bob', 5000, { print }), 64);
    assert.equal(await runTrace(admin('nope'), 'bob', 1, { print }), 3);
    assert.equal(await runTrace({ admin: { ...admin().admin, enabled: false } }, 'bob', 1, { print }), 3);
    assert.equal(await runTrace({ admin: { ...admin().admin, port: 1 } }, 'bob', 1, { print }), 3);
  });
});
