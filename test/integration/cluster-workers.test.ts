// Proves multi-core mode (workers: 2) on a real child mailproxy in front of slapd + Dovecot: logins across both workers,
// one consistent /metrics, /sessions from both, state pushed to workers, SIGHUP, worker restart after SIGKILL, SIGTERM drain.
import assert from 'node:assert/strict';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { worldRawConfig, type RawConfig } from './proxy-fixture.js';
import { adminGet, agentSays, metricValue, msUntilRefused, startChildProxy, type ChildProxy } from './child-proxy.js';

const DRAIN_MS = 1500;
const LOGINS = 40;
const HELD = 6;
const HANG_MS = 3000;

function clusterRawConfig(world: World, greeting: string): RawConfig {
  return worldRawConfig(world, (c) => {
    c['workers'] = 2;
    c['log'] = { level: 'info' };
    c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
    c['imap'] = { greeting, requireTlsForAuth: false, limits: { authFailureDelayMs: 300, authFailureMaxDelayMs: 300 } };
    c['health'] = { enabled: true, intervalMs: 300, timeoutMs: 500, rise: 1, fall: 1 };
    c['admin'] = { enabled: true, address: '127.0.0.1', port: 0, agentCheckPort: 0 };
    c['shutdown'] = { drainDeadlineMs: DRAIN_MS };
    c['workerHangTimeoutMs'] = HANG_MS;
  });
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('cluster: workers: 2 behind one set of listeners (child mailproxy)', function () {
  this.timeout(90_000);
  let world: World;
  let proxy: ChildProxy;
  let port: number;
  let admin: number;
  const held: Array<{ c: LineClient; pid?: number | undefined; n: number }> = [];

  async function login(user: 'alice' | 'bob'): Promise<string> {
    const u = world.users[user];
    const c = await LineClient.connect(port);
    try {
      await c.readLine();
      const r = await c.command('a', `LOGIN ${u.uid} ${u.password}`);
      if (/^a OK/m.test(r)) await c.command('z', 'LOGOUT');
      return r;
    } finally { c.close(); }
  }
  async function loginMany(n: number, concurrency = 8): Promise<string[]> {
    const out: string[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < n) { const i = next++; out.push(await login(i % 2 ? 'bob' : 'alice')); }
    }));
    return out;
  }
  const workerPids = () => [...new Set(proxy.logs.filter((l) => l.msg === 'worker listening').map((l) => l['pid'] as number))];
  const json = async (path: string) => JSON.parse((await adminGet(admin, path)).body) as Record<string, unknown>;
  async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
    const t0 = Date.now();
    for (;;) {
      const v = await f();
      if (v !== undefined) return v;
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  before(async () => {
    world = await startWorld();
    proxy = await startChildProxy(world, clusterRawConfig(world, 'cluster one'), { name: 'cluster' });
    port = proxy.port('imap', 'none');
    admin = proxy.adminPort!;
  });
  after(async () => {
    for (const h of held) h.c.close();
    await proxy?.stop();
    await world?.stop();
  });

  it('starts two workers; /readyz 200 once both listen', async () => {
    assert.equal(workerPids().length, 2);
    assert.ok(!workerPids().includes(proxy.pid));
    assert.equal((await adminGet(admin, '/readyz')).status, 200);
    assert.match(await agentSays(proxy.agentPort!), /^up\b/);
  });

  it(`${LOGINS} logins all succeed; ${HELD} held sessions are listed by /sessions from both workers`, async () => {
    const results = await loginMany(LOGINS);
    assert.equal(results.filter((r) => /^a OK/m.test(r)).length, LOGINS, results.find((r) => !/^a OK/m.test(r)));
    for (let i = 0; i < HELD; i++) {
      const c = await LineClient.connect(port);
      await c.readLine();
      const u = world.users[i % 2 ? 'bob' : 'alice'];
      assert.match(await c.command('a', `LOGIN ${u.uid} ${u.password}`), /^a OK/m);
      held.push({ c, n: 0 });
    }
    const s = await json('/sessions') as { count: number; sessions: Array<{ pid: number; phase: string; user: string; client: string }> };
    assert.equal(s.count, HELD);
    assert.ok(s.sessions.every((x) => x.phase === 'relay'));
    const pids = new Set(s.sessions.map((x) => x.pid));
    assert.deepEqual([...pids].sort(), workerPids().sort(), 'sessions were served by both workers');
    // Remember which worker serves each held session (by its client port).
    for (const h of held) h.pid = s.sessions.find((x) => x.client.endsWith(`:${h.c.socket.localPort}`))?.pid;
    assert.ok(held.every((h) => h.pid));
    const b = await json('/backends') as { backends: Array<{ backend: string; sessions: number }> };
    assert.equal(b.backends.reduce((n, x) => n + x.sessions, 0), HELD);
  });

  it('/metrics from the primary: logins summed over workers, backend_up once per endpoint', async () => {
    await until('probes to mark backend-dead down', async () => {
      const b = await json('/backends') as { backends: Array<{ backend: string; state: string }> };
      return b.backends.find((x) => x.backend === 'backend-dead')?.state === 'down' ? true : undefined;
    });
    const text = (await adminGet(admin, '/metrics')).body;
    assert.equal(metricValue(text, 'mailproxy_logins_total{protocol="imap",result="ok"}'), LOGINS + HELD);
    assert.equal(metricValue(text, 'mailproxy_sessions_active{protocol="imap",phase="relay"}'), HELD);
    const up = text.split('\n').filter((l) => l.startsWith('mailproxy_backend_up{'));
    const series = up.map((l) => l.split(' ')[0]);
    assert.equal(new Set(series).size, series.length, `duplicated backend_up series:\n${up.join('\n')}`);
    assert.ok(up.every((l) => / [01]$/.test(l)), up.join('\n'));
    assert.equal(metricValue(text, 'mailproxy_backend_up{backend="backend-a",protocol="imap"}'), 1);
    assert.equal(metricValue(text, 'mailproxy_backend_up{backend="backend-dead",protocol="imap"}'), 0);
    assert.equal(text.split('\n').filter((l) => l.startsWith('# TYPE mailproxy_logins_total ')).length, 1);
  });

  it('backend state set in the primary reaches every worker (maintenance on: refused on both; off: served)', async () => {
    const on = await adminGet(admin, '/backends/backend-b/maintenance?enabled=on', 'POST');
    assert.equal(on.status, 200, on.body);
    const refused = await Promise.all(Array.from({ length: 6 }, () => login('bob')));
    assert.ok(refused.every((r) => /^a NO \[UNAVAILABLE\]/m.test(r)), refused.join('\n'));
    assert.equal((await adminGet(admin, '/backends/backend-b/maintenance?enabled=off', 'POST')).status, 200);
    const served = await Promise.all(Array.from({ length: 6 }, () => login('bob')));
    assert.ok(served.every((r) => /^a OK/m.test(r)), served.join('\n'));
  });

  it('SIGHUP: the primary validates, every worker reloads; an invalid file is refused', async () => {
    let from = proxy.logs.length;
    proxy.writeConfig(clusterRawConfig(world, 'cluster two'));
    proxy.signal('SIGHUP');
    const done = await proxy.waitForLog((l) => l.msg === 'configuration reloaded', 15_000, from);
    assert.equal(done['workers'], 2);
    const greetings = await Promise.all(Array.from({ length: 8 }, async () => { const c = await LineClient.connect(port); const g = await c.readLine(); c.close(); return g; }));
    assert.ok(greetings.every((g) => g.endsWith('cluster two')), greetings.join('\n'));

    from = proxy.logs.length;
    proxy.writeConfig({ ...clusterRawConfig(world, 'cluster three'), bogusKey: true });
    proxy.signal('SIGHUP');
    await proxy.waitForLog((l) => l.msg === 'new configuration refused; old configuration stays', 10_000, from);
    const c = await LineClient.connect(port);
    assert.match(await c.readLine(), /cluster two$/);
    c.close();
    for (const h of held) assert.match(await h.c.command(`n${++h.n}`, 'NOOP'), /OK/);
  });

  it('a worker killed with SIGKILL is restarted; logins keep working meanwhile', async () => {
    const [victim, survivor] = workerPids();
    const from = proxy.logs.length;
    const t0 = Date.now();
    process.kill(victim!, 'SIGKILL');
    await proxy.waitForLog((l) => l.msg === 'worker died; restarting it' && l['pid'] === victim, 10_000, from);
    const during = await loginMany(10, 4);
    assert.equal(during.filter((r) => /^a OK/m.test(r)).length, 10, during.join('\n'));
    const back = await proxy.waitForLog((l) => l.msg === 'worker listening' && l['pid'] !== victim && l['pid'] !== survivor, 10_000, from);
    const restartMs = Date.now() - t0;
    assert.equal((await adminGet(admin, '/readyz')).status, 200);
    const after = await loginMany(10, 4);
    assert.equal(after.filter((r) => /^a OK/m.test(r)).length, 10);
    // Sessions on the survivor are untouched; the restarted worker runs the reloaded config.
    for (const h of held.filter((x) => x.pid === survivor)) assert.match(await h.c.command(`n${++h.n}`, 'NOOP'), /OK/);
    const greetings = await Promise.all(Array.from({ length: 6 }, async () => { const c = await LineClient.connect(port); const g = await c.readLine(); c.close(); return g; }));
    assert.ok(greetings.every((g) => g.endsWith('cluster two')), greetings.join('\n'));
    const s = await json('/sessions') as { sessions: Array<{ pid: number; phase: string }> };
    const relayed = s.sessions.filter((x) => x.phase === 'relay');
    assert.equal(relayed.length, held.filter((h) => h.pid === survivor).length);
    assert.ok(relayed.every((x) => x.pid === survivor), 'sessions of the killed worker are gone');
    console.log(`      restart: worker ${victim} killed, replacement ${back['pid'] as number} listening after ${restartMs} ms`);
  });

  it(`a worker that stops answering (SIGSTOP) is killed after workerHangTimeoutMs (${HANG_MS} ms) and replaced; logins work again`, async () => {
    const pids = workerPids();
    // The replacement from the SIGKILL test: the survivor keeps the held sessions the SIGTERM test needs.
    const victim = pids[2]!;
    assert.ok(victim && alive(victim));
    const from = proxy.logs.length;
    const t0 = Date.now();
    process.kill(victim, 'SIGSTOP');
    const hung = await proxy.waitForLog((l) => l['event'] === 'worker_unresponsive' && l['pid'] === victim, HANG_MS + 5000, from);
    const detectMs = Date.now() - t0;
    assert.ok((hung['silentMs'] as number) > HANG_MS);
    const back = await proxy.waitForLog((l) => l.msg === 'worker listening' && !pids.includes(l['pid'] as number), 10_000, from);
    const replacedMs = Date.now() - t0;
    await until('the stopped worker to be gone', async () => (alive(victim) ? undefined : true), 5000);
    const after = await loginMany(10, 4);
    assert.equal(after.filter((r) => /^a OK/m.test(r)).length, 10, after.join('\n'));
    const metrics = (await adminGet(admin, '/metrics')).body;
    assert.equal(metricValue(metrics, 'mailproxy_worker_restarts_total{reason="unresponsive"}'), 1);
    assert.equal(metricValue(metrics, 'mailproxy_worker_restarts_total{reason="exited"}'), 1, 'the SIGKILLed one');
    console.log(`      watchdog: worker ${victim} stopped; killed after ${detectMs} ms, replacement ${back['pid'] as number} listening after ${replacedMs} ms`);
  });

  it('SIGTERM to the primary: refuses at once, /readyz 503, sessions run to the deadline, BYE, every process exits 0', async () => {
    const live = held.filter((h) => !h.c.isClosed && h.pid === workerPids()[1]);
    assert.ok(live.length > 0);
    const pids = [proxy.pid, ...new Set(proxy.logs.filter((l) => l.msg === 'worker listening').map((l) => l['pid'] as number))];
    const t0 = Date.now();
    proxy.signal('SIGTERM');
    const refusedMs = await msUntilRefused(port, 1000);
    const ready = await adminGet(admin, '/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.body, /draining/);
    assert.match(await agentSays(proxy.agentPort!), /^drain\b/);
    await new Promise((r) => setTimeout(r, 500));
    for (const h of live) assert.match(await h.c.command(`n${++h.n}`, 'SELECT INBOX'), /^n\d+ OK/m);
    for (const h of live) assert.match(await h.c.readUntil(/^\* BYE/, DRAIN_MS + 5000), /^\* BYE \[UNAVAILABLE\]/m);
    const byeMs = Date.now() - t0;
    const exit = await proxy.exited;
    assert.equal(exit.code, 0);
    assert.ok(byeMs >= DRAIN_MS - 50 && byeMs < DRAIN_MS + 1500, `BYE at ${byeMs} ms`);
    await until('worker processes to end', async () => (pids.some(alive) ? undefined : true), 5000);
    const stops = proxy.logs.filter((l) => l.msg === 'stopped');
    assert.equal(stops.length, 3, 'two workers and the primary logged stopped');
    console.log(`      cluster drain: refused after ${refusedMs} ms, BYE at ${byeMs} ms, primary exit 0 at ${exit.at - t0} ms`);
  });
});
