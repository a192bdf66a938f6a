// Proves an admin kick reaches every mailproxy of a tier although Redis, or one proxy's link to it, was away when it was
// issued: two proxy processes, a real Redis (the documented ACL user), one proxy's link through a cuttable TCP link.
// Must not test the tier's other shared state (tier-proxies.test.ts) nor the pure replay rules (unit tests).
import assert from 'node:assert/strict';
import type { World } from './harness/world.js';
import type { RedisNode } from './harness/redis.js';
import type { TcpLink } from './harness/tcp-link.js';
import { startTierPair, type TierPair } from './tier-pair.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineClient } from './harness/line-client.js';
import { runCommand } from './harness/processes.js';
import { adminGet, metricValue, type ChildProxy, type LogLine } from './child-proxy.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');
const CHECK_MS = 500;
const BYE = /^\* BYE \[UNAVAILABLE\] Session closed by the administrator/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kicks reach every proxy of the tier after Redis or a proxy\'s link to it was away', function () {
  this.timeout(120_000);
  let pair: TierPair;
  let world: World;
  let redis: RedisNode;
  let link: TcpLink;
  let a: ChildProxy;
  let b: ChildProxy;

  before(async () => {
    pair = await startTierPair(['ka', 'kb'], { kicks: { checkIntervalMs: CHECK_MS } });
    ({ world, redis, link, a, b } = pair); // B reaches Redis only through the link the test can cut
  });
  after(async () => pair?.stop());

  const login = async (p: ChildProxy, user: string, password: string) => {
    const c = await LineClient.connect(p.port('imap', 'none'));
    await c.readLine();
    const r = await c.command('a', `LOGIN ${user} ${password}`, 10_000);
    assert.match(r, /^a OK/m, r);
    return c;
  };
  const kick = async (p: ChildProxy, user: string) => {
    const r = await adminGet(p.adminPort!, `/sessions/kick?user=${user}`, 'POST');
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as { kicked: number; tier?: string; message?: string };
  };
  const tierState = (p: ChildProxy, to: 'up' | 'down', from: number) => p.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === to, 15_000, from);
  const kicksTotal = async (p: ChildProxy, outcome: string) => metricValue((await adminGet(p.adminPort!, '/metrics')).body, `mailproxy_tier_kicks_total{outcome="${outcome}"}`) ?? 0;
  /** B carried out a kick of `user`: heard live (tier_kick_applied) or read late from the stream (tier_kick_replayed).
   *  Receiving the broadcast (tier_action) is no application: a kick already replayed is received and then ignored. */
  const isApplied = (user: string) => (l: LogLine) => (l['event'] === 'tier_kick_applied' || l['event'] === 'tier_kick_replayed') && l['user'] === user;
  const appliedOnB = (user: string, from: number) => b.waitForLog(isApplied(user), 20_000, from);

  it('applies a kick heard live once: the stream read that follows does not apply it again', async () => {
    const { uid, password } = world.users.alice;
    const onB = await login(b, uid, password);
    const fromB = b.logs.length;
    const replayedBefore = await kicksTotal(b, 'replayed');
    const cli = await runCommand(process.execPath, [MAIN, 'kick', uid, '-c', a.file], { timeoutMs: 30_000 });
    assert.match(cli, /^closed 0 sessions of alice here; sent to every instance of the tier$/m, cli);
    assert.match(await onB.readUntil(BYE, 5000), BYE);
    await appliedOnB(uid, fromB);
    await sleep(CHECK_MS * 4); // B reads the stream past this kick meanwhile
    assert.equal(b.logs.slice(fromB).filter(isApplied(uid)).length, 1, 'applied once, live (never replayed)');
    assert.equal(b.logs.slice(fromB).filter((l) => l['event'] === 'tier_kick_replayed').length, 0);
    assert.equal(await kicksTotal(b, 'replayed'), replayedBefore);
  });

  it('(1) a kick issued on A while Redis is stopped closes the user\'s older session on B once Redis is back, and spares the one opened after it', async () => {
    const { uid, password } = world.users.alice;
    const onA = await login(a, uid, password);
    const oldOnB = await login(b, uid, password);
    const fromA = a.logs.length, fromB = b.logs.length;
    await redis.stop();
    await Promise.all([tierState(a, 'down', fromA), tierState(b, 'down', fromB)]);

    const answer = await kick(a, uid);
    assert.equal(answer.kicked, 1, JSON.stringify(answer));
    assert.equal(answer.tier, 'pending', JSON.stringify(answer));
    assert.match(answer.message ?? '', /pending tier-wide/);
    assert.match(await onA.readUntil(BYE, 5000), BYE, 'the local part is applied at once');
    assert.equal(await kicksTotal(a, 'pending'), 1);
    await sleep(50);
    const newOnB = await login(b, uid, password); // logs in after the kick (Redis still away: B answers from its own state)

    const fromB2 = b.logs.length;
    await redis.restart();
    await appliedOnB(uid, fromB2);
    assert.match(await oldOnB.readUntil(BYE, 10_000), BYE, 'the older session on B gets the IMAP goodbye');
    assert.match(await newOnB.command('n', 'NOOP'), /^n OK/m, 'the session opened after the kick survives it');
    assert.equal(await kicksTotal(a, 'sent_late'), 1);
    assert.equal(await kicksTotal(a, 'dropped'), 0);
    // Later reads of the stream (every 500 ms) do not apply it again.
    await sleep(CHECK_MS * 4);
    assert.match(await newOnB.command('m', 'NOOP'), /^m OK/m);
    const applied = b.logs.slice(fromB2).filter(isApplied(uid));
    assert.equal(applied.length, 1, JSON.stringify(applied));
    newOnB.close();
  });

  it('(2) B, cut off from Redis while A kicks, catches up when its link returns; (3) its session opened after the kick survives', async () => {
    const { uid, password } = world.users.bob;
    const oldOnB = await login(b, uid, password);
    await tierState(a, 'up', 0);
    const fromB = b.logs.length;
    const replayedBefore = await kicksTotal(b, 'replayed');
    link.cut();
    await tierState(b, 'down', fromB);

    const answer = await kick(a, uid);
    assert.equal(answer.tier, 'sent', JSON.stringify(answer));
    await sleep(CHECK_MS * 2);
    assert.equal(oldOnB.isClosed, false, 'B did not hear the broadcast');
    const newOnB = await login(b, uid, password);

    const fromB2 = b.logs.length;
    link.restore();
    const replayed = await b.waitForLog((l) => l['event'] === 'tier_kick_replayed' && l['user'] === uid, 20_000, fromB2);
    assert.equal(replayed['kicked'], 1, JSON.stringify(replayed));
    assert.equal(typeof replayed['id'], 'string');
    assert.equal(replayed['password'], undefined);
    assert.match(await oldOnB.readUntil(BYE, 10_000), BYE);
    assert.match(await newOnB.command('n', 'NOOP'), /^n OK/m, 'the session opened after the kick survives the replay');
    await sleep(CHECK_MS * 4);
    assert.match(await newOnB.command('m', 'NOOP'), /^m OK/m);
    assert.equal(await kicksTotal(b, 'replayed'), replayedBefore + 1, 'replayed once, counted');
    assert.equal(b.logs.slice(fromB2).filter(isApplied(uid)).length, 1, 'applied once, by the replay');
    newOnB.close();
  });
});
