// Proves the tier module through Redis Sentinel (real primary, replica and three Sentinels): it finds the primary, rides
// out a failover under steady load with every call answered within its deadline, and then shares state on the new primary.
// The last case runs a real mailproxy (child process) on the Sentinel set under a steady login load.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { tierSchema } from '../../src/config/tier-schema.js';
import { Tier } from '../../src/tier/tier.js';
import { startSentinelSet, type SentinelSet } from './harness/redis.js';
import { pollUntil } from './harness/ports.js';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { worldRawConfig } from './proxy-fixture.js';
import { startChildProxy } from './child-proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('tier module through Redis Sentinel (failover)', function () {
  this.timeout(60_000);
  let dir: string;
  let set: SentinelSet;
  const tiers: Tier[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mp-sentinel-'));
    set = await startSentinelSet({ dir });
  });

  after(async () => {
    await Promise.all(tiers.map((t) => t.close()));
    await set?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finds the primary, answers every call within the deadline during a failover, and resyncs on the new primary', async () => {
    const config = tierSchema.parse({
      redis: { sentinel: { name: set.masterName, sentinels: set.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })) } },
      commandTimeoutMs: 50, retryIntervalMs: 100, heartbeatMs: 200, instanceTtlMs: 2000,
    });
    const a = new Tier({ config: { ...config, instanceName: 'a' }, logger: silentLogger, role: 'instance' });
    const b = new Tier({ config: { ...config, instanceName: 'b' }, logger: silentLogger, role: 'instance' });
    tiers.push(a, b);
    a.start(); b.start();
    await pollUntil(() => a.isUp && b.isUp, 10_000, () => 'tier up through Sentinel');
    await sleep(300);
    const oldPort = set.primary.port;
    assert.equal(await set.currentPrimaryPort(), oldPort);

    // Steady load: a penalty call and a session admit every 20 ms; each must answer within the deadline (+ margin).
    let n = 0;
    let slowest = 0;
    let stop = false;
    const sources = { tier: 0, local: 0 };
    const load = (async () => {
      while (!stop) {
        const t = performance.now();
        await a.penalty.failure('192.0.2.50', `user${n % 5}`, 10, 10);
        const r = await a.sessions.admit({ id: `s${n}`, protocol: 'imap', user: 'dora', backend: 'backend-a', address: '192.0.2.51', client: '192.0.2.51:1', startedAt: Date.now() });
        assert.equal(r.ok, true);
        sources[r.source]++;
        slowest = Math.max(slowest, performance.now() - t);
        n++;
        await sleep(20);
      }
    })();
    await sleep(300);
    const killedAt = Date.now();
    await set.primary.kill();
    await pollUntil(async () => (await set.currentPrimaryPort().catch(() => oldPort)) !== oldPort, 20_000, () => 'sentinels promoted the replica');
    await pollUntil(() => a.isUp && b.isUp, 10_000, () => 'tier up again on the new primary');
    const outageMs = Date.now() - killedAt;
    await sleep(500);
    stop = true;
    await load;
    assert.ok(sources.local > 0, 'the outage was seen (calls fell back)');
    // Two calls with a 50 ms deadline each; the margin is for a loaded CI machine. The outage itself lasts seconds.
    assert.ok(outageMs > 1000, `outage ${outageMs} ms`);
    assert.ok(slowest < 2 * 50 + 250, `slowest pair of calls ${slowest.toFixed(1)} ms during a ${outageMs} ms outage`);
    // Every session a registered (during the outage too) is listed by b from the new primary.
    const listed = await b.sessions.list('dora');
    assert.equal(listed.source, 'tier');
    assert.equal(listed.sessions.length, n);
    assert.equal(await set.currentPrimaryPort(), set.replica.port);
  });
});

describe('mailproxy through Redis Sentinel (failover under login load)', function () {
  this.timeout(90_000);
  let dir: string;
  let set: SentinelSet;
  let world: World;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mp-sentinel-'));
    [set, world] = await Promise.all([startSentinelSet({ dir }), startWorld()]);
  });

  after(async () => {
    await set?.stop();
    await world?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps every login of a mailproxy under load working through a failover', async () => {
    const raw = worldRawConfig(world, (r) => {
      r['instanceName'] = 'sentinel-proxy';
      r['log'] = { level: 'info' };
      r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
      r['imap'] = { requireTlsForAuth: false };
      r['tier'] = {
        instanceName: 'sp',
        redis: { sentinel: { name: set.masterName, sentinels: set.sentinels.map((x) => ({ host: '127.0.0.1', port: x.port })) } },
        commandTimeoutMs: 50, retryIntervalMs: 100, heartbeatMs: 200,
      };
    });
    const proxy = await startChildProxy(world, raw, { name: 'sentinel-proxy', timeoutMs: 60_000 });
    try {
      await proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 20_000);
      const port = proxy.port('imap', 'none');
      const { uid, password } = world.users.alice;
      let stop = false;
      const outcomes: string[] = [];
      const load = Promise.all([0, 1].map(async () => {
        while (!stop) {
          const c = await LineClient.connect(port);
          try {
            await c.readLine();
            const r = await c.command('a', `LOGIN ${uid} ${password}`, 10_000);
            outcomes.push(/^a OK/m.test(r) ? 'ok' : r);
            c.write('z LOGOUT\r\n');
          } finally { c.close(); }
        }
      }));
      await sleep(500);
      const from = proxy.logs.length;
      await set.primary.kill();
      await pollUntil(async () => (await set.currentPrimaryPort().catch(() => set.primary.port)) === set.replica.port, 20_000, () => 'sentinels promoted the replica');
      await proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 15_000, from);
      await sleep(500);
      stop = true;
      await load;
      const failed = outcomes.filter((o) => o !== 'ok');
      assert.ok(outcomes.length > 20, `${outcomes.length} logins`);
      assert.deepEqual(failed, [], `${failed.length} of ${outcomes.length} logins failed`);
      assert.ok(proxy.logs.slice(from).some((l) => l['event'] === 'tier_state' && l['to'] === 'down'), 'the failover was seen');
    } finally {
      await proxy.stop();
    }
  });
});
