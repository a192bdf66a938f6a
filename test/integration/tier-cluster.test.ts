// Proves the tier in cluster mode: the primary speaks for the instance (heartbeat, broadcast, backend view) and the workers
// register sessions and count failures under its instance id, so a second instance sees and kicks them.
// Must not repeat the single-process tier cases (tier-proxies.test.ts).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { startRedis, type RedisNode } from './harness/redis.js';
import { allocatePorts, pollUntil } from './harness/ports.js';
import { worldRawConfig } from './proxy-fixture.js';
import { adminGet, startChildProxy, type ChildProxy } from './child-proxy.js';

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
    const config = (name: string, port: number, workers: number) => worldRawConfig(world, (r) => {
      r['instanceName'] = name;
      r['workers'] = workers;
      r['log'] = { level: 'info' };
      r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port, tls: 'none' }];
      r['imap'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 1600, maxAuthAttempts: 1 } };
      r['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      r['tier'] = { instanceName: name, redis: { host: '127.0.0.1', port: redis.port }, heartbeatMs: 200, instanceTtlMs: 1500 };
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
});
