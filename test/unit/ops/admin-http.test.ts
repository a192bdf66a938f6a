// Proves the admin HTTP server on a loopback port: auth, every endpoint, JSON errors, robustness.
// Must not reach real backends (the monitor is fed nothing but what the test gives it).
import assert from 'node:assert/strict';
import net from 'node:net';
import { HealthMonitor } from '../../../src/health/health.js';
import { localAdminDeps } from '../../../src/ops/admin-local.js';
import { isLoopback, parseSwitch, startAdminServer, tokenMatches, type AdminDeps, type Readiness } from '../../../src/ops/http.js';
import { SessionRegistry } from '../../../src/proxy/sessions.js';
import { FakeClock } from '../health/fake-clock.js';
import { testConfig } from '../health/helpers.js';

describe('health/http (admin server on 127.0.0.1:0)', () => {
  const config = testConfig();
  const clock = new FakeClock();
  const monitor = new HealthMonitor({ config, clock, hooks: { fire: async () => undefined } });
  const sessions = new SessionRegistry();
  const kicked: string[] = [];
  let readiness: Readiness = { ready: true, reasons: [] };
  let server: Awaited<ReturnType<typeof startAdminServer>>;
  let base: string;
  const token = 's3cret-token';

  function addSession(id: string, user: string, backend: string): void {
    sessions.add({ info: { id, protocol: 'imap', client: '192.0.2.1', user, backend, phase: 'relay', startedAt: 1 }, kick: (e) => { kicked.push(`${id}:${e.code}`); sessions.remove(id); } });
  }

  before(async () => {
    const deps: AdminDeps = localAdminDeps({ monitor, sessions, readiness: () => readiness });
    server = await startAdminServer({ deps, token, address: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${server.port}`;
  });
  after(async () => { await server.close(); });

  const auth = { authorization: `Bearer ${token}` };
  const get = (path: string, headers: Record<string, string> = auth) => fetch(base + path, { headers });
  const post = (path: string, body?: unknown, headers: Record<string, string> = auth) => fetch(base + path, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });

  it('/healthz needs no token', async () => {
    const r = await get('/healthz', {});
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'ok' });
  });

  it('everything else needs the bearer token', async () => {
    for (const h of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${token}` }, { authorization: 'Bearer ' }] as Array<Record<string, string>>) {
      const r = await get('/backends', h);
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') ?? '', /Bearer/);
    }
    assert.equal((await get('/backends')).status, 200);
  });

  it('/readyz reflects the readiness callback: 200 or 503 with reasons', async () => {
    let r = await get('/readyz');
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { ready: true, reasons: [] });
    readiness = { ready: false, reasons: ['draining'], draining: true };
    r = await get('/readyz');
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { ready: false, reasons: ['draining'], draining: true });
    readiness = { ready: true, reasons: [] };
  });

  it('/metrics serves the registry in Prometheus text format', async () => {
    monitor.recordProbe({ backend: 'c', protocol: 'imap', ok: true, at: clock.now(), latencyMs: 1 });
    const r = await get('/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/plain/);
    assert.match(await r.text(), /mailproxy_backend_up\{backend="c",protocol="imap"\} 1/);
  });

  it('/backends lists backends with state and sessions; /backends/NAME one of them', async () => {
    addSession('s1', 'alice', 'c');
    const r = await get('/backends');
    const body = (await r.json()) as { backends: Array<{ backend: string; state: string; sessions: number }> };
    assert.deepEqual(body.backends.map((b) => b.backend), ['a', 'b', 'c']);
    assert.equal(body.backends[2]!.state, 'up');
    assert.equal(body.backends[2]!.sessions, 1);
    const one = await get('/backends/c');
    assert.equal(((await one.json()) as { backend: string }).backend, 'c');
    assert.equal((await get('/backends/zzz')).status, 404);
  });

  it('POST /backends/NAME/maintenance switches maintenance by JSON body or query', async () => {
    let r = await post('/backends/b/maintenance', { enabled: true });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { state: string }).state, 'maintenance');
    assert.equal(monitor.stateOf('b', 'imap'), 'maintenance');
    r = await post('/backends/b/maintenance?enabled=off');
    assert.equal(((await r.json()) as { maintenance: boolean }).maintenance, false);
    assert.equal((await post('/backends/nope/maintenance', { enabled: true })).status, 404);
    assert.equal((await post('/backends/b/maintenance', { enabled: 'maybe' })).status, 400);
    assert.equal((await post('/backends/b/maintenance', '{not json')).status, 400);
    assert.equal((await post('/backends/b/maintenance', '[1]')).status, 400);
    assert.equal((await get('/backends/b/maintenance')).status, 405);
  });

  it('GET /sessions filters by user and backend; POST /sessions/kick kicks by user or backend', async () => {
    addSession('s2', 'bob', 'a');
    addSession('s3', 'bob', 'b');
    let r = await get('/sessions?user=bob');
    let body = (await r.json()) as { count: number; sessions: Array<{ id: string }> };
    assert.deepEqual(body.sessions.map((s) => s.id).sort(), ['s2', 's3']);
    r = await get('/sessions?backend=c');
    body = (await r.json()) as { count: number; sessions: Array<{ id: string }> };
    assert.equal(body.count, 1);
    assert.equal((await get('/sessions')).status, 200);

    assert.equal((await post('/sessions/kick', {})).status, 400, 'refuses to kick everyone');
    assert.equal((await post('/sessions/kick', { user: 42 })).status, 400);
    // Longer than the tier's broadcast carries: refused, not kicked here alone and answered "sent".
    assert.equal((await post('/sessions/kick', { user: 'a'.repeat(513) })).status, 400);
    assert.equal((await post('/sessions/kick', { backend: 'b'.repeat(513) })).status, 400);
    r = await post('/sessions/kick', { user: 'bob' });
    assert.deepEqual(await r.json(), { kicked: 2 });
    r = await post('/sessions/kick?backend=c');
    assert.deepEqual(await r.json(), { kicked: 1 });
    assert.deepEqual(kicked.sort(), ['s1:ADMIN_KICK', 's2:ADMIN_KICK', 's3:ADMIN_KICK']);
  });

  it('unknown paths are 404, wrong methods 405, big bodies 413, and nothing crashes the server', async () => {
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await post('/backends')).status, 405);
    assert.equal((await post('/sessions/kick', JSON.stringify({ user: 'x'.repeat(70_000) }))).status, 413);
    assert.equal((await get('/backends/%E0%A4%A')).status, 400);
    // A raw garbage request line must not take the server down.
    await new Promise<void>((resolve) => {
      const s = net.connect(server.port, '127.0.0.1', () => s.end('\x00\x01 garbage\r\n\r\n'));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
    assert.equal((await get('/healthz', {})).status, 200);
  });

  it('a throwing callback is a JSON 500, not a crash', async () => {
    const boom: AdminDeps = {
      readiness: () => { throw new Error('boom'); },
      metrics: async () => { throw new Error('boom'); },
      backends: async () => [],
      setMaintenance: async () => undefined,
      listSessions: async () => [],
      kickSessions: async () => ({ kicked: 0 }),
    };
    const s = await startAdminServer({ deps: boom, address: '127.0.0.1', port: 0 });
    try {
      const r = await fetch(`http://127.0.0.1:${s.port}/readyz`);
      assert.equal(r.status, 500);
      assert.deepEqual(await r.json(), { error: 'internal error' });
      assert.equal((await fetch(`http://127.0.0.1:${s.port}/backends`)).status, 200, 'no token configured: open');
    } finally { await s.close(); }
  });

  it('isLoopback: 127/8, ::1 and IPv4-mapped loopback; not 0.0.0.0, ::, or other addresses (an open admin server without token is warned about)', () => {
    for (const a of ['127.0.0.1', '127.9.8.7', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopback(a), true, a);
    for (const a of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', '2001:db8::1', '1270.0.0.1']) assert.equal(isLoopback(a), false, a);
  });

  it('tokenMatches and parseSwitch', () => {
    assert.equal(tokenMatches('Bearer abc', 'abc'), true);
    assert.equal(tokenMatches('bearer abc', 'abc'), true);
    assert.equal(tokenMatches('Bearer abcd', 'abc'), false);
    assert.equal(tokenMatches(undefined, ''), false);
    assert.deepEqual(['on', 'OFF', 'true', '0', true, false, 'x', 1].map(parseSwitch), [true, false, true, false, true, false, undefined, undefined]);
  });
});
