// Owns the two-proxy tier world of the outage tests: a real Redis with the README's ACL user, proxy A on it directly and
// proxy B through a cuttable TCP link (each a child `mailproxy start` with one plain IMAP listener and the admin API).
// Must not assert anything; tests cut the link, stop Redis and read the proxies' logs themselves.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { startRedis, TIER_ACL_RULES, type RedisNode } from './harness/redis.js';
import { startTcpLink, type TcpLink } from './harness/tcp-link.js';
import { allocatePorts } from './harness/ports.js';
import { worldRawConfig, type RawConfig } from './proxy-fixture.js';
import { startChildProxy, type ChildProxy } from './child-proxy.js';

export interface TierPair {
  world: World;
  redis: RedisNode;
  /** B's only way to Redis. */
  link: TcpLink;
  a: ChildProxy;
  b: ChildProxy;
  stop(): Promise<void>;
}

/** Start the pair (instance names `names`, `tier` merged over fast heartbeats and retries) and wait until both share the tier. */
export async function startTierPair(names: [string, string], tier: RawConfig = {}): Promise<TierPair> {
  const password = `${names.join('-')}-redis-secret`;
  const world = await startWorld();
  writeFileSync(join(world.dir, 'redis.pass'), `${password}\n`);
  const redis = await startRedis({ dir: join(world.dir, 'redis'), extra: [`user mailproxy on >${password} ${TIER_ACL_RULES}`] });
  const link = await startTcpLink(redis.port);
  const start = async (name: string, redisPort: number, adminPort: number) => startChildProxy(world, worldRawConfig(world, (r) => {
    r['instanceName'] = name;
    r['log'] = { level: 'info' };
    r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
    r['admin'] = { enabled: true, address: '127.0.0.1', port: adminPort };
    r['tier'] = {
      instanceName: name,
      redis: { host: '127.0.0.1', port: redisPort, username: 'mailproxy', passwordFile: join(world.dir, 'redis.pass') },
      commandTimeoutMs: 50, retryIntervalMs: 100, heartbeatMs: 200, instanceTtlMs: 1500,
      ...tier,
    };
  }), { name, timeoutMs: 60_000 });
  const started: ChildProxy[] = [];
  try {
    const [pa, pb] = await allocatePorts(2);
    started.push(await start(names[0], redis.port, pa!));
    started.push(await start(names[1], link.port, pb!));
    await Promise.all(started.map((p) => p.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 10_000)));
  } catch (e) {
    await Promise.all(started.map((p) => p.stop()));
    await link.close();
    await redis.stop();
    await world.stop();
    throw e;
  }
  const [a, b] = started as [ChildProxy, ChildProxy];
  return {
    world, redis, link, a, b,
    async stop() {
      await Promise.all([a, b].map((p) => p.stop()));
      await link.close();
      await redis.stop();
      await world.stop();
    },
  };
}
