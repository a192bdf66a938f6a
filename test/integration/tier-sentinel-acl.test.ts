// Proves a real mailproxy (child process) on a Sentinel set run as an operator following Redis' docs would: ACL users
// everywhere (default user off on data nodes and Sentinels); then TLS-only ports too; then TLS on the data nodes only
// (Sentinels on plain TCP: redis.tls without sentinel.tls). It finds the primary, shares sessions with another instance,
// loses no login in a failover and resyncs on the new primary; a wrong Sentinel or Redis password is logged clearly,
// without the password, and logins go on from local state.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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
import { startChildProxy, type ChildProxy, type LogLine } from './child-proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const variants = { plain: false, 'and TLS-only ports': true, 'and TLS on the data nodes only': 'data' } as const;
for (const [label, tls] of Object.entries(variants)) {
  describe(`mailproxy through a Redis Sentinel set with ACL users everywhere${tls ? ` ${label}` : ''}`, function () {
    this.timeout(120_000);
    let dir: string;
    let set: SentinelSet;
    let world: World;
    const tiers: Tier[] = [];

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'mp-sentinel-acl-'));
      [set, world] = await Promise.all([startSentinelSet({ dir, acl: true, tls }), startWorld()]);
    });

    after(async () => {
      await Promise.all(tiers.map((t) => t.close()));
      await set?.stop();
      await world?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** The tier section an operator writes for this set (passwords in files); `wrong` replaces one password. */
    async function tierSection(wrong?: 'sentinel' | 'redis'): Promise<Record<string, unknown>> {
      const u = set.users!;
      const sentinelPasswordFile = join(dir, `sentinel-password-${wrong ?? 'ok'}`);
      const redisPasswordFile = join(dir, `redis-password-${wrong ?? 'ok'}`);
      await writeFile(sentinelPasswordFile, wrong === 'sentinel' ? 'not-the-sentinel-password\n' : `${u.sentinelClient.password}\n`, { mode: 0o600 });
      await writeFile(redisPasswordFile, wrong === 'redis' ? 'not-the-redis-password\n' : `${u.mailproxy.password}\n`, { mode: 0o600 });
      return {
        instanceName: 'sp',
        redis: {
          sentinel: {
            name: set.masterName, sentinels: set.sentinels.map((x) => ({ host: '127.0.0.1', port: x.port })),
            username: u.sentinelClient.user, passwordFile: sentinelPasswordFile, ...(tls === true ? { tls: true } : {}),
          },
          username: u.mailproxy.user,
          passwordFile: redisPasswordFile,
          ...(set.tls ? { tls: { caFile: set.tls.caPath } } : {}),
        },
        commandTimeoutMs: 50, retryIntervalMs: 100, heartbeatMs: 200,
      };
    }

    async function startProxy(name: string, wrong?: 'sentinel' | 'redis'): Promise<ChildProxy> {
      const tier = await tierSection(wrong);
      const raw = worldRawConfig(world, (r) => {
        r['instanceName'] = name;
        r['log'] = { level: 'info' };
        r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
        r['imap'] = { requireTlsForAuth: false };
        r['tier'] = tier;
      });
      return startChildProxy(world, raw, { name, timeoutMs: 60_000 });
    }

    async function login(port: number): Promise<{ client: LineClient; reply: string }> {
      const client = await LineClient.connect(port);
      await client.readLine();
      const { uid, password } = world.users.alice;
      return { client, reply: await client.command('a', `LOGIN ${uid} ${password}`, 10_000) };
    }

    it('finds the primary, shares sessions, loses no login in a failover and resyncs on the new primary', async () => {
      const u = set.users!;
      const proxy = await startProxy('sentinel-acl-proxy');
      // A second instance in this process, with the same users: it sees what the proxy registers.
      const observer = new Tier({
        config: {
          ...tierSchema.parse({
            redis: {
              sentinel: {
                name: set.masterName, sentinels: set.sentinels.map((x) => ({ host: '127.0.0.1', port: x.port })),
                username: u.sentinelClient.user, password: u.sentinelClient.password, tls: tls === true,
              },
              username: u.mailproxy.user, password: u.mailproxy.password,
              ...(set.tls ? { tls: { ca: readFileSync(set.tls.caPath, 'utf8') } } : {}),
            },
            commandTimeoutMs: 200, retryIntervalMs: 100, heartbeatMs: 200, instanceTtlMs: 3000,
          }),
          instanceName: 'observer',
        },
        logger: silentLogger, role: 'instance',
      });
      tiers.push(observer);
      observer.start();
      const held: LineClient[] = [];
      try {
        await proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 20_000);
        await pollUntil(() => observer.isUp, 15_000, () => 'observer tier up through the authenticated Sentinels');
        const port = proxy.port('imap', 'none');
        const { uid } = world.users.alice;
        const sessionOf = async (c: LineClient) => {
          const listed = await observer.sessions.list(uid);
          return listed.source === 'tier' ? listed.sessions.find((s) => s.instance === 'sp' && s.client.endsWith(`:${c.socket.localPort}`)) : undefined;
        };

        // Shared: a session held on the proxy is listed by the other instance.
        const first = await login(port);
        held.push(first.client);
        assert.match(first.reply, /^a OK/m);
        await pollUntil(async () => (await sessionOf(first.client)) !== undefined, 10_000, () => 'observer lists the proxy session');
        assert.equal(await set.currentPrimaryPort(), set.primary.port);

        let stop = false;
        const outcomes: Array<{ reply: string; at: number }> = [];
        const load = Promise.all([0, 1].map(async () => {
          while (!stop) {
            const { client, reply } = await login(port);
            try {
              outcomes.push({ reply: /^a OK/m.test(reply) ? 'ok' : reply, at: Date.now() });
              client.write('z LOGOUT\r\n');
            } finally { client.close(); }
          }
        }));
        await sleep(500);
        const from = proxy.logs.length;
        const killedAt = Date.now();
        await set.primary.kill();
        const down = await proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'down', 15_000, from);
        // A login while the tier is down is registered locally only; the resync must push it to the new primary.
        const during = await login(port);
        held.push(during.client);
        assert.match(during.reply, /^a OK/m);
        await pollUntil(async () => (await set.currentPrimaryPort().catch(() => set.primary.port)) === set.replica.port, 20_000, () => 'sentinels promoted the replica');
        await proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'up', 15_000, proxy.logs.indexOf(down));
        const upAt = Date.now();
        await sleep(500);
        stop = true;
        await load;
        const failed = outcomes.filter((o) => o.reply !== 'ok').map((o) => o.reply);
        const inOutage = outcomes.filter((o) => o.at > killedAt && o.at < upAt).length;
        assert.ok(outcomes.length >= 10 && inOutage > 0, `${outcomes.length} logins, ${inOutage} during the ${upAt - killedAt} ms outage`);
        assert.deepEqual(failed, [], `${failed.length} of ${outcomes.length} logins failed`);
        // Resynced: both held sessions are listed from the new primary by the other instance.
        await pollUntil(async () => (await sessionOf(during.client)) !== undefined && (await sessionOf(first.client)) !== undefined, 10_000, () => 'observer lists both held sessions from the new primary');
        assert.equal((await set.replica.cli('ROLE')).split('\n')[0], 'master');
        // Nothing was refused by an ACL along the way (a missing rule shows here first).
        for (const n of [set.replica, ...set.sentinels]) assert.equal(await n.cli('ACL', 'LOG'), '', `ACL LOG of ${n.port}`);
        assertNoSecret(proxy.logs, Object.values(u).map((c) => c.password));
      } finally {
        for (const c of held) c.close();
        await proxy.stop();
      }
    });

    // The refusal does not depend on where TLS ends: two of the three variants are enough.
    if (tls !== 'data') it('logs clearly, without the password, that a wrong Sentinel or Redis password is refused, and logins go on', async () => {
      for (const wrong of ['sentinel', 'redis'] as const) {
        const proxy = await startProxy(`sentinel-acl-wrong-${wrong}`, wrong);
        try {
          const down = await proxy.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === 'down', 20_000);
          const reason = String(down['reason']);
          assert.match(reason, wrong === 'sentinel'
            ? /^the Sentinels refused the tier's user mailproxy-sentinel \(WRONGPASS; check tier\.redis\.sentinel\.username, password/
            : /^Redis refused the tier's user mailproxy \(WRONGPASS; check tier\.redis\.username, password/, reason);
          const { client, reply } = await login(proxy.port('imap', 'none'));
          client.close();
          assert.match(reply, /^a OK/m, 'logins go on from local state');
          await sleep(500);
          assert.ok(!proxy.logs.some((l) => l['event'] === 'tier_state' && l['to'] === 'up'), 'never up with a wrong password');
          assertNoSecret(proxy.logs, ['not-the-sentinel-password', 'not-the-redis-password', ...Object.values(set.users!).map((c) => c.password)]);
        } finally {
          await proxy.stop();
        }
      }
    });
  });
}

function assertNoSecret(logs: LogLine[], secrets: string[]): void {
  const text = logs.map((l) => JSON.stringify(l)).join('\n');
  for (const s of secrets) assert.ok(!text.includes(s), 'a password appears in the log');
}
