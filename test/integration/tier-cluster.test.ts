// Proves the tier in cluster mode: the primary speaks for the instance (heartbeat, broadcast, backend view) and the workers
// register sessions and count failures under its instance id, so a second instance sees and kicks them, and every
// worker follows the tier's maintenance flags and down verdicts.
// Must not repeat the single-process tier cases (tier-proxies.test.ts).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { startRedis, type RedisNode } from './harness/redis.js';
import { allocatePorts, pollUntil } from './harness/ports.js';
import { worldRawConfig } from './proxy-fixture.js';
import { adminGet, startChildProxy, type ChildProxy, type LogLine } from './child-proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('tier with a cluster instance (primary + 2 workers) and a single-process instance', function () {
  this.timeout(120_000);
  let world: World;
  let redis: RedisNode;
  let cluster: ChildProxy;
  let single: ChildProxy;

  before(async () => {
    world = await startWorld();
    redis = await startRedis({ dir: join(world.dir, 'redis') });
    const [clusterPort, singlePort] = await allocatePorts(2);
    // The single instance probes often; the cluster hardly ever (its probe at start is stale evidence after 2 s), so what
    // the cluster's workers know of a backend's state comes from the tier.
    const config = (name: string, port: number, workers: number) => worldRawConfig(world, (r) => {
      r['instanceName'] = name;
      r['workers'] = workers;
      r['log'] = { level: 'info' };
      r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port, tls: 'none' }];
      r['imap'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 1600, maxAuthAttempts: 1 } };
      r['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      r['health'] = workers === 1 ? { enabled: true, intervalMs: 300, timeoutMs: 2000, rise: 1, fall: 2, jitterRatio: 0 } : { enabled: true, intervalMs: 600_000, timeoutMs: 2000, jitterRatio: 0 };
      r['tier'] = { instanceName: name, redis: { host: '127.0.0.1', port: redis.port }, heartbeatMs: 200, instanceTtlMs: 1500, backendView: { refreshMs: 300, evidenceMaxAgeMs: 2000 } };
    });
    [cluster, single] = await Promise.all([
      startChildProxy(world, config('c1', clusterPort!, 2), { name: 'c1', timeoutMs: 60_000 }),
      startChildProxy(world, config('s1', singlePort!, 1), { name: 's1', timeoutMs: 60_000 }),
    ]);
    await Promise.all([cluster, single].map((p) => p.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 20_000)));
    await pollUntil(() => cluster.logs.filter((l) => l['event'] === 'tier_state' && l['to'] === 'up').length >= 3, 20_000, () => 'primary and both workers reach Redis');
  });

  after(async () => {
    await Promise.all([cluster?.stop(), single?.stop()]);
    await redis?.stop();
    await world?.stop();
  });

  const login = async (port: number, user: string, password: string) => {
    const c = await LineClient.connect(port);
    await c.readLine();
    const t = performance.now();
    const r = await c.command('a', `LOGIN ${user} ${password}`, 10_000);
    return { c, ok: /^a OK/m.test(r), ms: performance.now() - t };
  };

  it('lists and kicks sessions held by the cluster\'s workers from the other instance', async () => {
    const { uid, password } = world.users.alice;
    const open = await Promise.all([0, 1, 2, 3].map(() => login(cluster.port('imap', 'none'), uid, password)));
    for (const o of open) assert.ok(o.ok);
    const listed = JSON.parse((await adminGet(single.adminPort!, `/sessions?user=${uid}`)).body) as { sessions: Array<{ instance: string }> };
    assert.equal(listed.sessions.filter((s) => s.instance === 'c1').length, 4, JSON.stringify(listed));
    assert.equal((await adminGet(single.adminPort!, `/sessions/kick?user=${uid}`, 'POST')).status, 200);
    for (const o of open) await pollUntil(() => o.c.isClosed, 1000, () => 'cluster session kicked');
  });

  it('gives a guesser one curve across the workers and the other instance', async () => {
    const ports = [cluster.port('imap', 'none'), single.port('imap', 'none'), cluster.port('imap', 'none'), cluster.port('imap', 'none')];
    const ms: number[] = [];
    for (const p of ports) { const r = await login(p, 'nobody3', 'wrong'); assert.equal(r.ok, false); ms.push(r.ms); r.c.close(); }
    const chosen = [cluster, single].flatMap((p) => p.logs.filter((l) => l['msg'] === 'login failed' && l['user'] === 'nobody3'))
      .sort((a, b) => String(a['time']).localeCompare(String(b['time']))).map((l) => l['delayMs']);
    assert.deepEqual(chosen, [100, 200, 400, 800]);
    [100, 200, 400, 800].forEach((want, i) => assert.ok(ms[i]! >= want - 5, `attempt ${i + 1}: ${ms.map(Math.round)}`));
  });

  /** `n` logins on the cluster one after another (the primary hands connections to the workers in turn): the replies, and
   *  the workers (pids) whose log says they refused a login of `user` since `from`. */
  const clusterLogins = async (n: number, user: string, password: string, from: number) => {
    const replies: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await login(cluster.port('imap', 'none'), user, password);
      replies.push(`${r.ms.toFixed(0)} ms ${r.ok ? 'OK' : 'refused'}`);
      assert.ok(!r.ok, replies.join(', '));
      assert.ok(r.ms < 500, `answered fast, not after a connect or probe: ${replies.join(', ')}`);
      r.c.close();
    }
    const refusedBy = (l: LogLine) => l['msg'] === 'login failed' && l['user'] === user;
    await pollUntil(() => cluster.logs.slice(from).filter(refusedBy).length >= n, 5000, () => 'refusals logged');
    return new Set(cluster.logs.slice(from).filter(refusedBy).map((l) => `${String(l['pid'])} ${String(l['code'])}`));
  };

  it('carries a maintenance flag set on the other instance, and the tier\'s down verdict, to both workers', async () => {
    const { uid, password } = world.users.bob;
    // Maintenance on backend-b, set on the single instance: every worker refuses bob with the temporary error.
    let from = cluster.logs.length;
    assert.equal((await adminGet(single.adminPort!, '/backends/backend-b/maintenance?enabled=on', 'POST')).status, 200);
    await sleep(1000);
    let seen = await clusterLogins(6, uid, password, from);
    assert.equal(seen.size, 2, `both workers, code BACKEND_MAINTENANCE: ${[...seen].join('; ')}`);
    for (const s of seen) assert.match(s, / BACKEND_MAINTENANCE$/);
    assert.equal((await adminGet(single.adminPort!, '/backends/backend-b/maintenance?enabled=off', 'POST')).status, 200);
    await sleep(1000);
    const back = await login(cluster.port('imap', 'none'), uid, password);
    assert.ok(back.ok, 'maintenance off reaches the workers');
    back.c.close();

    // backend-b stops; only the single instance probes it. The tier's verdict makes both workers fail it fast.
    const fromSingle = single.logs.length;
    from = cluster.logs.length;
    await world.backends.b.stop();
    try {
      await single.waitForLog((l) => l['event'] === 'backend_endpoint_state' && l['backend'] === 'backend-b' && l['protocol'] === 'imap' && l['to'] === 'down', 10_000, fromSingle);
      await cluster.waitForLog((l) => l['event'] === 'tier_backend_verdict' && l['backend'] === 'backend-b' && l['protocol'] === 'imap' && l['down'] === true, 5000, from);
      await sleep(300);
      seen = await clusterLogins(6, uid, password, cluster.logs.length);
      assert.equal(seen.size, 2, `both workers, code BACKEND_DOWN: ${[...seen].join('; ')}`);
      for (const s of seen) assert.match(s, / BACKEND_DOWN$/);
    } finally {
      await world.backends.b.start();
    }
    await cluster.waitForLog((l) => l['event'] === 'tier_backend_verdict' && l['backend'] === 'backend-b' && l['protocol'] === 'imap' && l['down'] === false, 10_000, from);
    await sleep(300);
    const again = await login(cluster.port('imap', 'none'), uid, password);
    assert.ok(again.ok, 'the verdict lifted on every worker');
    again.c.close();
  });
});
