// Proves three mailproxy processes behind a real HAProxy (round robin, PROXY v2) act as one tier through a real Redis:
// one failure-delay curve, admin actions from one instance reaching the others within 1 s, one session list, a shared
// backend verdict, and no failed or slowed login while Redis is stopped, killed and restarted.
// Must not test the tier module's own edge cases (tier-redis.test.ts) nor single-proxy behaviour.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { startHaproxy, type HaproxyInstance } from './harness/haproxy.js';
import { startRedis, TIER_ACL_RULES, type RedisNode } from './harness/redis.js';
import { allocatePorts, pollUntil } from './harness/ports.js';
import { runCommand } from './harness/processes.js';
import { worldRawConfig, type RawConfig } from './proxy-fixture.js';
import { adminGet, metricValue, startChildProxy, type ChildProxy } from './child-proxy.js';
import { firstMessageHeader } from './imap-helpers.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DELAY_MS = 100;
const MAX_DELAY_MS = 1600;
const PASSWORD = 'tier-proxies-secret';

function lastIndex<T>(list: T[], pred: (x: T) => boolean): number {
  for (let i = list.length - 1; i >= 0; i--) if (pred(list[i]!)) return i;
  return 0;
}

interface Node { name: string; proxy: ChildProxy; direct: number; admin: number }

describe('three mailproxy instances behind HAProxy sharing a tier on Redis', function () {
  this.timeout(180_000);
  let world: World;
  let redis: RedisNode;
  let haproxy: HaproxyInstance;
  const nodes: Node[] = [];

  const tierSection = () => ({
    redis: { host: '127.0.0.1', port: redis.port, username: 'mailproxy', passwordFile: join(world.dir, 'redis.pass') },
    commandTimeoutMs: 50, retryIntervalMs: 100, heartbeatMs: 200, instanceTtlMs: 1500,
    backendView: { refreshMs: 300, evidenceMaxAgeMs: 2000 },
    limits: { maxSessionsPerUser: { imap: 3 } },
  });

  const config = (name: string, probes: boolean, adminPort: number): RawConfig => worldRawConfig(world, (r) => {
    r['instanceName'] = name;
    r['log'] = { level: 'info' };
    r['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' },
    ];
    r['imap'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: DELAY_MS, authFailureMaxDelayMs: MAX_DELAY_MS, maxAuthAttempts: 1 } };
    r['admin'] = { enabled: true, address: '127.0.0.1', port: adminPort };
    // Instance 1 probes often; 2 and 3 hardly ever (their one probe at start is stale evidence after 2 s).
    r['health'] = probes ? { enabled: true, intervalMs: 300, timeoutMs: 2000, rise: 1, fall: 2, jitterRatio: 0 } : { enabled: true, intervalMs: 600_000, timeoutMs: 2000, jitterRatio: 0 };
    r['directory'] = { ...(r['directory'] as object), cache: { ttlMs: 600_000, negativeTtlMs: 500 } };
    r['tier'] = { ...tierSection(), instanceName: name };
  });

  before(async () => {
    world = await startWorld();
    writeFileSync(join(world.dir, 'redis.pass'), `${PASSWORD}\n`);
    redis = await startRedis({ dir: join(world.dir, 'redis'), extra: [`user mailproxy on >${PASSWORD} ${TIER_ACL_RULES}`] });
    const adminPorts = await allocatePorts(3);
    for (const [i, name] of ['n1', 'n2', 'n3'].entries()) {
      const proxy = await startChildProxy(world, config(name, i === 0, adminPorts[i]!), { name, timeoutMs: 60_000 });
      nodes.push({ name, proxy, direct: proxy.port('imap', 'none'), admin: proxy.adminPort! });
    }
    haproxy = await startHaproxy({ dir: join(world.dir, 'haproxy'), servers: nodes.map((n) => ({ name: n.name, port: n.proxy.port('imap', 'starttls') })) });
    await Promise.all(nodes.map((n) => n.proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 10_000)));
  });

  after(async () => {
    if (process.env['TIER_DUMP']) writeFileSync(process.env['TIER_DUMP'], nodes.map((n) => n.proxy.logs.map((l) => JSON.stringify(l)).join('\n')).join('\n----\n'));
    await Promise.all(nodes.map((n) => n.proxy.stop()));
    await haproxy?.stop();
    await redis?.stop();
    await world?.stop();
  });

  /** One IMAP login; resolves the answer line, how long LOGIN took and the open client. */
  const login = async (port: number, user: string, password: string, localAddress?: string) => {
    const c = await LineClient.connect(port, localAddress ? { localAddress } : {});
    await c.readLine();
    const t = performance.now();
    const r = await c.command('a', `LOGIN ${user} ${password}`, 10_000);
    return { c, ok: /^a OK/m.test(r), reply: r, ms: performance.now() - t };
  };
  const post = (n: Node, path: string) => adminGet(n.admin, path, 'POST');
  /** Ms until `c` is closed by the proxy (BYE or close), failing after limitMs. */
  const closedWithin = async (c: LineClient, limitMs: number) => {
    const t = Date.now();
    await pollUntil(() => c.isClosed, limitMs, () => 'session closed by the proxy');
    return Date.now() - t;
  };

  it('gives a guesser the same failure-delay curve through three instances as through one', async () => {
    const curve = async (port: number, addr: string, user: string) => {
      const ms: number[] = [];
      for (let i = 0; i < 5; i++) { const r = await login(port, user, 'wrong', addr); assert.equal(r.ok, false); ms.push(r.ms); r.c.close(); }
      return ms;
    };
    const through3 = await curve(haproxy.port, '127.0.0.31', 'nobody1');
    const through1 = await curve(nodes[0]!.direct, '127.0.0.32', 'nobody2');
    const servedBy = nodes.filter((n) => n.proxy.logs.some((l) => l['msg'] === 'login failed' && l['client'] === '127.0.0.31')).length;
    assert.equal(servedBy, 3, 'round robin spread the guesses over all three');
    // The delay each instance chose (logged with the failure), in the order of the attempts, and what the client waited.
    const chosen = (client: string) => nodes.flatMap((n) => n.proxy.logs.filter((l) => l['msg'] === 'login failed' && l['client'] === client))
      .sort((a, b) => String(a['time']).localeCompare(String(b['time']))).map((l) => l['delayMs']);
    const expected = [100, 200, 400, 800, 1600];
    assert.deepEqual(chosen('127.0.0.31'), expected, 'through three instances');
    assert.deepEqual(chosen('127.0.0.32'), expected, 'through one');
    for (const [i, want] of expected.entries()) {
      for (const got of [through3[i]!, through1[i]!]) assert.ok(got >= want - 5, `attempt ${i + 1} answered after ${got.toFixed(0)} ms, before its ${want} ms delay`);
    }
    // The owner is never locked out: the right password from another address is answered at once.
    const owner = await login(haproxy.port, world.users.alice.uid, world.users.alice.password, '127.0.0.33');
    assert.ok(owner.ok, owner.reply);
    owner.c.close();
  });

  it('lists a user\'s sessions on all three instances from any of them, and holds the tier-wide session limit', async () => {
    const { uid, password } = world.users.alice;
    const open = await Promise.all(nodes.map((n) => login(n.direct, uid, password)));
    for (const o of open) assert.ok(o.ok, o.reply);
    for (const n of nodes) {
      const r = await adminGet(n.admin, `/sessions?user=${uid}`);
      const body = JSON.parse(r.body) as { sessions: Array<{ instance: string; backend: string }> };
      assert.deepEqual([...new Set(body.sessions.map((s) => s.instance))].sort(), ['n1', 'n2', 'n3'], r.body);
      assert.ok(body.sessions.every((s) => s.backend === 'backend-a'));
    }
    // A fourth IMAP session of alice, on any instance, passes the tier-wide limit of 3.
    // (On a loaded machine Redis may miss the 50 ms deadline; the login then falls back to this instance's own count and is
    // let in, by design. Such an attempt shows in the fallback counter and is tried again.)
    const admitFallbacks = async () => metricValue((await adminGet(nodes[1]!.admin, '/metrics')).body, 'mailproxy_tier_fallbacks_total{operation="sessions_admit"}') ?? 0;
    let refused = '';
    for (let i = 0; i < 3 && !refused; i++) {
      const before = await admitFallbacks();
      const fourth = await login(nodes[1]!.direct, uid, password);
      fourth.c.close();
      if (/^a NO \[LIMIT\]/m.test(fourth.reply)) refused = fourth.reply;
      else assert.ok(await admitFallbacks() > before, `admitted without a fallback: ${fourth.reply}`);
      await sleep(300);
    }
    assert.match(refused, /^a NO \[LIMIT\]/m);
    // The same through the CLI of instance 2.
    const cli = await runCommand(process.execPath, [MAIN, 'sessions', uid, '-c', nodes[1]!.proxy.file], { timeoutMs: 30_000 });
    assert.match(cli, /^3 sessions of alice$/m, cli);
    for (const n of nodes) assert.match(cli, new RegExp(`^${n.name}\\s+imap\\s+backend-a`, 'm'), cli);
    for (const o of open) o.c.close();
  });

  it('carries a kick, a maintenance flag and a route invalidation issued on instance 1 to 2 and 3 within 1 s', async () => {
    const { uid, password, dn } = world.users.bob;
    // Kick by user.
    let open = await Promise.all(nodes.slice(1).map((n) => login(n.direct, uid, password)));
    for (const o of open) assert.ok(o.ok, o.reply);
    assert.equal((await post(nodes[0]!, `/sessions/kick?user=${uid}`)).status, 200);
    for (const o of open) assert.ok(await closedWithin(o.c, 1000) < 1000);

    // Maintenance of bob's backend: new logins on 2 and 3 get the temporary error.
    assert.equal((await post(nodes[0]!, '/backends/backend-b/maintenance?enabled=on')).status, 200);
    await sleep(1000);
    for (const n of nodes.slice(1)) {
      const r = await login(n.direct, uid, password);
      assert.match(r.reply, /^a NO \[UNAVAILABLE\]/m, `${n.name}: ${r.reply}`);
      r.c.close();
    }
    assert.equal((await post(nodes[0]!, '/backends/backend-b/maintenance?enabled=off')).status, 200);
    await sleep(1000);

    // Route invalidation: bob's mailbox moves to backend-a; every instance still has backend-b cached (10 min TTL).
    open = await Promise.all(nodes.slice(1).map((n) => login(n.direct, uid, password)));
    for (const o of open) assert.ok(o.ok, o.reply);
    await runCommand('ldapmodify', ['-x', '-H', world.ldap.url, '-D', world.ldap.adminDN, '-w', world.ldap.adminPassword],
      { input: `dn: ${dn}\nchangetype: modify\nreplace: mailHost\nmailHost: backend-a\n` });
    const stillOld = await login(nodes[1]!.direct, uid, password);
    assert.match(await firstMessageHeader(stillOld.c, 'X-Test-Backend'), /backend-b/, 'the cache still routes to the old backend');
    stillOld.c.close();
    const inv = await post(nodes[0]!, `/routes/invalidate?user=${uid}`);
    assert.equal(inv.status, 200, inv.body);
    assert.equal((JSON.parse(inv.body) as { tier: boolean }).tier, true);
    for (const o of open) assert.ok(await closedWithin(o.c, 1000) < 1000, 'sessions of the moved user are kicked everywhere');
    for (const n of nodes) {
      // A child's log lines arrive over its stdout a little late: the earlier logins' "login ok" may come in after this
      // point, so match this login by its time, not by the log's length.
      const t0 = Date.now();
      const r = await login(n.direct, uid, password);
      assert.ok(r.ok, r.reply);
      const at = (l: Record<string, unknown>) => (typeof l['time'] === 'number' ? l['time'] : Date.parse(String(l['time'])));
      const ok = await n.proxy.waitForLog((l) => l['msg'] === 'login ok' && l['user'] === uid && at(l) >= t0, 2000, 0);
      assert.equal(ok['backend'], 'backend-a', `${n.name} routes bob to the new backend`);
      r.c.close();
    }
  });

  it('fails a backend fast on all three within 1 s of the tier deciding it is down, though only instance 1 probes it', async () => {
    await sleep(2100); // instances 2 and 3 probed once at start; that evidence is stale now
    const { uid, password } = world.users.alice;
    const from1 = nodes[0]!.proxy.logs.length;
    const from = nodes.map((n) => n.proxy.logs.length);
    await world.backends.a.stop();
    try {
      const down1 = await nodes[0]!.proxy.waitForLog((l) => l['event'] === 'backend_endpoint_state' && l['backend'] === 'backend-a' && l['protocol'] === 'imap' && l['to'] === 'down', 5000, from1);
      const downAt = Date.parse(String(down1['time']));
      for (const [i, n] of nodes.entries()) {
        if (i === 0) continue;
        const v = await n.proxy.waitForLog((l) => l['event'] === 'tier_backend_verdict' && l['backend'] === 'backend-a' && l['protocol'] === 'imap' && l['down'] === true, 2000, from[i]);
        assert.ok(Date.parse(String(v['time'])) - downAt < 1000, `${n.name} followed after ${Date.parse(String(v['time'])) - downAt} ms`);
        const r = await login(n.direct, uid, password);
        assert.match(r.reply, /^a NO \[UNAVAILABLE\]/m, r.reply);
        assert.ok(r.ms < 500, `${n.name} answered in ${r.ms.toFixed(0)} ms`);
        r.c.close();
      }
    } finally {
      await world.backends.a.start();
    }
    await Promise.all(nodes.map((n, i) => n.proxy.waitForLog((l) => (l['event'] === 'tier_backend_verdict' && l['backend'] === 'backend-a' && l['down'] === false) || (i === 0 && l['event'] === 'backend_endpoint_state' && l['backend'] === 'backend-a' && l['to'] === 'up'), 5000, from[i])));
  });

  it('loses and slows no login while Redis is stopped, then killed, and shares state again once it is back', async () => {
    const { uid, password } = world.users.alice;
    // backend-a (restarted by the test before) is serving again everywhere.
    await pollUntil(async () => {
      for (const n of nodes) if (metricValue((await adminGet(n.admin, '/metrics')).body, 'mailproxy_tier_backend_down{backend="backend-a",protocol="imap"}') === 1) return false;
      return true;
    }, 10_000, () => 'backend-a not held down by the tier');
    const results: Array<{ ok: boolean; ms: number; phase: string; reply: string }> = [];
    let phase = 'before';
    let stop = false;
    const worker = async (addr: string) => {
      while (!stop) {
        const p = phase;
        const r = await login(haproxy.port, uid, password, addr).catch((e: Error) => ({ ok: false, ms: 0, reply: e.message, c: undefined }));
        results.push({ ok: r.ok, ms: r.ms, phase: p, reply: r.ok ? '' : r.reply });
        if (r.c) { r.c.write('z LOGOUT\r\n'); r.c.close(); }
      }
    };
    const load = Promise.all(['127.0.0.41', '127.0.0.42'].map(worker));
    // Each phase lasts 1.5 s and until at least 3 logins were started and answered in it (a loaded machine is slow).
    const hold = async () => {
      const p = phase;
      await sleep(1500);
      await pollUntil(() => results.filter((r) => r.phase === p).length >= 3, 30_000, () => `3 logins in phase ${p}`);
    };
    await hold();
    phase = 'stopped';
    redis.pause();
    await hold();
    phase = 'killed';
    await redis.kill();
    await hold();
    phase = 'restarted';
    await redis.restart();
    await Promise.all(nodes.map((n) => n.proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 10_000, lastIndex(n.proxy.logs, (l) => l['event'] === 'tier_state' && l['to'] === 'down'))));
    await sleep(1000);
    stop = true;
    await load;
    const failed = results.filter((r) => !r.ok);
    assert.equal(failed.length, 0, `${failed.length} of ${results.length} logins failed: ${JSON.stringify(failed.slice(0, 5))}`);
    const before = results.filter((r) => r.phase === 'before').map((r) => r.ms).sort((a, b) => a - b);
    const baseline = before[Math.floor(before.length * 0.9)]!;
    for (const p of ['stopped', 'killed', 'restarted']) {
      const during = results.filter((r) => r.phase === p);
      assert.ok(during.length >= 2, `${p}: ${during.length} logins`);
      const slow = during.filter((r) => r.ms > baseline + 50 + 250);
      assert.ok(slow.length === 0, `${p}: ${slow.length} logins slower than the deadline allows (p90 before ${baseline.toFixed(0)} ms; ${slow.map((r) => r.ms.toFixed(0)).join(',')})`);
    }
    // Shared again: the tier is up everywhere and a session on any instance is listed by the others.
    for (const n of nodes) assert.equal(metricValue((await adminGet(n.admin, '/metrics')).body, 'mailproxy_tier_up'), 1);
    const o = await login(nodes[2]!.direct, uid, password);
    assert.ok(o.ok);
    await sleep(300);
    const listed = JSON.parse((await adminGet(nodes[0]!.admin, `/sessions?user=${uid}`)).body) as { sessions: Array<{ instance: string }> };
    assert.ok(listed.sessions.some((s) => s.instance === 'n3'), JSON.stringify(listed));
    o.c.close();
  });
});
