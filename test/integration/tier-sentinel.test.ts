// Proves the tier module through Redis Sentinel (real primary, replica and three Sentinels): it finds the primary, rides
// out a failover under steady load with every call answered within its deadline, and then shares state on the new primary.
// Must not start mailproxy (tier-proxies.test.ts does that under a Sentinel failover).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { tierSchema } from '../../src/config/tier-schema.js';
import { Tier } from '../../src/tier/tier.js';
import { startSentinelSet, type SentinelSet } from './harness/redis.js';
import { pollUntil } from './harness/ports.js';

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
    await set.primary.kill();
    await pollUntil(async () => (await set.currentPrimaryPort().catch(() => oldPort)) !== oldPort, 20_000, () => 'sentinels promoted the replica');
    await pollUntil(() => a.isUp && b.isUp, 10_000, () => 'tier up again on the new primary');
    await sleep(500);
    stop = true;
    await load;
    assert.ok(sources.local > 0, 'the outage was seen (calls fell back)');
    assert.ok(slowest < 2 * 50 + 40, `slowest pair of calls ${slowest.toFixed(1)} ms (two calls, 50 ms deadline each)`);
    // Every session a registered (during the outage too) is listed by b from the new primary.
    const listed = await b.sessions.list('dora');
    assert.equal(listed.source, 'tier');
    assert.equal(listed.sessions.length, n);
    assert.equal(await set.currentPrimaryPort(), set.replica.port);
  });
});
