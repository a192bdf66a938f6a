// Proves the tier module alone against a real redis-server: the documented ACL suffices, state is shared between
// instances, every call falls back within its deadline when Redis is stopped or killed, and state is resynced after.
// Must not start mailproxy or the mail world (tier-proxies.test.ts does).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import type { TierConfig } from '../../src/config/tier-schema.js';
import { registry } from '../../src/metrics.js';
import { Tier } from '../../src/tier/tier.js';
import { PoolRouter } from '../../src/pools/pool-router.js';
import { SessionRegistry } from '../../src/proxy/sessions.js';
import { configSchema } from '../../src/config/schema.js';
import type { LocalEvidence } from '../../src/tier/backend-view.js';
import type { TierAction } from '../../src/tier/broadcast.js';
import { startRedis, TIER_ACL_RULES, type RedisNode } from './harness/redis.js';
import { pollUntil } from './harness/ports.js';

const PASSWORD = 'tier-test-secret';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  return { logger: pino({ level: 'info' }, sink), lines };
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await registry.metrics();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}${labels}`) && !line.startsWith('#')) sum += Number(line.split(' ').pop());
  return sum;
}

describe('tier module against a real redis-server', function () {
  this.timeout(60_000);
  let dir: string;
  let redis: RedisNode;
  let tierConfig: TierConfig;
  const tiers: Tier[] = [];

  const evidence: LocalEvidence[] = [];
  const makeTier = (name: string, overrides: Partial<TierConfig> = {}) => {
    const { logger, lines } = capture();
    const tier = new Tier({ config: { ...tierConfig, instanceName: name, ...overrides }, logger, role: 'instance' });
    tiers.push(tier);
    return { tier, lines };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mp-tier-'));
    redis = await startRedis({ dir: join(dir, 'redis'), extra: [`user mailproxy on >${PASSWORD} ${TIER_ACL_RULES}`] });
    await writeFile(join(dir, 'redis.pass'), `${PASSWORD}\n`);
    // Through the real loader: passwordFile is resolved relative to the config file.
    const cfg = parseConfig([
      'listeners: [{ protocol: imap, port: 0, tls: none }]',
      'directory: { type: static, static: { file: users.yaml } }',
      'tier:',
      `  redis: { host: 127.0.0.1, port: ${redis.port}, username: mailproxy, passwordFile: redis.pass }`,
      '  commandTimeoutMs: 50',
      '  retryIntervalMs: 100',
      '  heartbeatMs: 200',
      '  instanceTtlMs: 1000',
      '  limits: { maxSessionsPerUser: { imap: 2 } }',
      '  backendView: { refreshMs: 200, evidenceMaxAgeMs: 5000 }',
    ].join('\n'), join(dir, 'mailproxy.yaml'));
    assert.equal(cfg.tier?.redis.password, PASSWORD);
    tierConfig = cfg.tier!;
  });

  afterEach(async () => {
    await Promise.all(tiers.splice(0).map((t) => t.close()));
    redis.resume();
  });

  after(async () => {
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const upAll = async (...ts: Tier[]) => pollUntil(() => ts.every((t) => t.isUp), 5000, () => 'tier up');

  it('shares penalties, sessions with limits, broadcasts and the backend view between instances, with only the documented ACL', async () => {
    const a = makeTier('a');
    const b = makeTier('b');
    const received: TierAction[] = [];
    b.tier.broadcast.onAction((act) => received.push(act));
    const verdicts: string[] = [];
    a.tier.attachBackendView({ evidence: () => evidence, maintenance: () => [] }, { verdict: () => undefined, maintenance: () => undefined });
    b.tier.attachBackendView({ evidence: () => [], maintenance: () => [] }, { verdict: (bk, p, down) => verdicts.push(`${bk} ${p} ${down}`), maintenance: () => undefined });
    a.tier.start(); b.tier.start();
    await upAll(a.tier, b.tier);
    await sleep(300); // heartbeats of both, subscriptions
    const fallbacksBefore = await metric('mailproxy_tier_fallbacks_total');

    // Penalty: failures through a and b add up; the curve is the one-proxy curve over the shared count.
    const delays = [];
    for (const t of [a.tier, b.tier, a.tier, b.tier]) delays.push(await t.penalty.failure('192.0.2.7', 'Alice', 100, 1000));
    assert.deepEqual(delays, [100, 200, 400, 800]);
    // Another address guessing the same name shares the name's count (never more than the curve's cap).
    assert.equal(await b.tier.penalty.failure('192.0.2.8', 'alice', 100, 1000), 1000);
    a.tier.penalty.success('192.0.2.7', 'alice');
    await sleep(50);
    assert.equal(await b.tier.penalty.count('192.0.2.7', 'alice'), 0);

    // Sessions and the per-user limit (2 IMAP sessions tier-wide), listed from either instance.
    const entry = (id: string, protocol = 'imap') => ({ id, protocol, user: 'alice', mail: 'alice@example.test', backend: 'backend-a', address: '192.0.2.9', client: '192.0.2.9:1000', startedAt: Date.now() });
    assert.deepEqual(await a.tier.sessions.admit(entry('a1')), { ok: true, source: 'tier' });
    assert.deepEqual(await b.tier.sessions.admit(entry('b1')), { ok: true, source: 'tier' });
    assert.deepEqual(await b.tier.sessions.admit(entry('b2')), { ok: false, limit: 'user', count: 2, source: 'tier' });
    assert.equal((await a.tier.sessions.admit(entry('a2', 'pop3'))).ok, true, 'the limit is per protocol');
    const listed = await b.tier.sessions.list('ALICE');
    assert.equal(listed.source, 'tier');
    assert.deepEqual(listed.sessions.map((s) => `${s.instance} ${s.id} ${s.protocol}`).sort(), ['a a1 imap', 'a a2 pop3', 'b b1 imap']);
    // Named by the account's mail address (in any case), as a kick may name it: the same sessions.
    const byMail = await a.tier.sessions.list('Alice@Example.TEST');
    assert.equal(byMail.source, 'tier');
    assert.deepEqual(byMail.sessions.map((s) => `${s.instance} ${s.id} ${s.user}`).sort(), ['a a1 alice', 'a a2 alice', 'b b1 alice']);
    assert.deepEqual((await a.tier.sessions.list('alice@other.test')).sessions, []);
    // A session admit can clear a penalty in the same call (what a successful login does).
    await b.tier.penalty.failure('192.0.2.10', 'alice', 100, 1000);
    assert.equal(await a.tier.penalty.count('192.0.2.10', 'alice'), 1);
    assert.equal((await a.tier.sessions.admit(entry('a3', 'submission'), a.tier.penalty.clearLocal('192.0.2.10', 'alice'))).ok, true);
    assert.equal(await b.tier.penalty.count('192.0.2.10', 'alice'), 0);
    a.tier.sessions.release('a3');
    a.tier.sessions.release('a1');
    await sleep(50);
    assert.equal((await b.tier.sessions.admit(entry('b3'))).ok, true, 'a released slot is free again');

    // Keys never contain the client's text.
    const keys = await redis.cli('--user', 'default', 'KEYS', '*');
    assert.doesNotMatch(keys, /alice|192\.0\.2/i, keys);

    // Broadcast: a's action arrives at b (not at a itself).
    assert.equal(await a.tier.broadcast.send({ type: 'invalidate', user: 'alice' }), true);
    await pollUntil(() => received.length > 0, 1000, () => 'broadcast received');
    assert.deepEqual(received[0], { type: 'invalidate', user: 'alice' });

    // Backend view: a alone probes backend-x and sees it down; b (no evidence of its own) follows within 1 s.
    evidence.push({ backend: 'backend-x', protocol: 'imap', health: 'down', at: Date.now() });
    const t0 = Date.now();
    await a.tier.backendView!.publish(true);
    await pollUntil(() => b.tier.backendView!.isDown('backend-x', 'imap'), 1000, () => 'b sees the tier verdict');
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(verdicts, ['backend-x imap true']);

    // With the ACL above every operation was allowed: nothing fell back, the tier never went down.
    assert.equal([...a.lines, ...b.lines].filter((l) => l['event'] === 'tier_state' && l['to'] === 'down').length, 0);
    assert.equal(await metric('mailproxy_tier_fallbacks_total'), fallbacksBefore);
  });

  it('falls back within the deadline when Redis is SIGSTOPped, then killed, logs the change once, and resyncs after a restart', async () => {
    const a = makeTier('a');
    const b = makeTier('b');
    a.tier.start(); b.tier.start();
    await upAll(a.tier, b.tier);
    await sleep(300);
    const entry = (id: string) => ({ id, protocol: 'pop3', user: 'bob', mail: 'bob@example.test', backend: 'backend-a', address: '192.0.2.20', client: '192.0.2.20:1', startedAt: Date.now() });
    assert.equal((await a.tier.sessions.admit(entry('before'))).source, 'tier');

    redis.pause();
    const timings: number[] = [];
    const timed = async <T>(p: Promise<T>): Promise<T> => { const t = performance.now(); const v = await p; timings.push(performance.now() - t); return v; };
    // The first call waits out the deadline; the ones after it answer at once from local state.
    const d1 = await timed(a.tier.penalty.failure('192.0.2.21', 'bob', 100, 1000));
    const d2 = await timed(a.tier.penalty.failure('192.0.2.21', 'bob', 100, 1000));
    assert.deepEqual([d1, d2], [100, 200], 'the local curve goes on');
    const r = await timed(a.tier.sessions.admit(entry('during-stop')));
    assert.deepEqual(r, { ok: true, source: 'local' });
    // A pool login asks the tier where the user's sessions are: it gets the login deadline, not the operators' listing one.
    const pools = new PoolRouter({
      config: () => configSchema.parse({ listeners: [{ protocol: 'imap', port: 143, tls: 'none' }], directory: { type: 'static', static: { file: 'x' } },
        backends: { m1: { host: 'h1' }, m2: { host: 'h2' } }, pools: { store1: { members: ['m1', 'm2'] } } }),
      sessions: new SessionRegistry(), tier: a.tier.sessions,
    });
    const routed = await timed(pools.route('store1', 'bob'));
    assert.ok(['m1', 'm2'].includes(routed.member));
    for (const ms of timings) assert.ok(ms < 50 + 150, `a call took ${ms.toFixed(1)} ms (deadline 50 ms)`);
    assert.equal(a.tier.isUp, false);
    assert.equal(await metric('mailproxy_tier_up'), 0);
    const listedLocal = await a.tier.sessions.list('bob@EXAMPLE.test');
    assert.equal(listedLocal.source, 'local');
    assert.deepEqual(listedLocal.sessions.map((s) => s.id).sort(), ['before', 'during-stop'], 'this process\'s own, named by mail too');

    await redis.kill();
    const t = performance.now();
    assert.deepEqual(await a.tier.sessions.admit(entry('during-kill')), { ok: true, source: 'local' });
    assert.ok(performance.now() - t < 50, 'a dead Redis costs nothing');
    assert.equal(a.lines.filter((l) => l['event'] === 'tier_state' && l['to'] === 'down').length, 1, 'the change is logged once');

    await redis.restart();
    await upAll(a.tier, b.tier);
    await sleep(400); // heartbeats after the restart
    // Resync: a's sessions (all three) are back in the empty Redis, its failures counted while away too.
    const listed = await b.tier.sessions.list('bob');
    assert.equal(listed.source, 'tier');
    assert.deepEqual(listed.sessions.map((s) => s.id).sort(), ['before', 'during-kill', 'during-stop']);
    assert.deepEqual((await b.tier.sessions.list('BOB@example.test')).sessions.map((s) => s.id).sort(), ['before', 'during-kill', 'during-stop'], 'the mail\'s set was resynced too');
    assert.equal(await b.tier.penalty.count('192.0.2.21', 'bob'), 2);
    assert.equal(a.lines.filter((l) => l['event'] === 'tier_state' && l['to'] === 'up').length, 2);
  });

  it('lets an instance that died stop counting once its heartbeat expires', async () => {
    const a = makeTier('a');
    const b = makeTier('b');
    a.tier.start(); b.tier.start();
    await upAll(a.tier, b.tier);
    await sleep(300);
    const entry = (id: string) => ({ id, protocol: 'imap', user: 'carol', backend: 'backend-a', address: '192.0.2.30', client: '192.0.2.30:1', startedAt: Date.now() });
    await a.tier.sessions.admit(entry('a1'));
    await a.tier.sessions.admit(entry('a2'));
    assert.equal((await b.tier.sessions.admit(entry('b1'))).ok, false);
    // a "crashes": no goodbye, no releases; only its heartbeat stops.
    await a.tier.client.close();
    await sleep(tierConfig.instanceTtlMs + 300);
    assert.equal((await b.tier.sessions.admit(entry('b1'))).ok, true);
    assert.deepEqual((await b.tier.sessions.list('carol')).sessions.map((s) => s.id), ['b1']);
  });
});
