// Proves an operator's tier-wide actions hold as the README states them, through two mailproxy processes sharing a real
// Redis (the documented ACL user), one of them reaching it through a cuttable TCP link: maintenance switched off while an
// instance or Redis was away stays off everywhere, the newest switch wins after Redis restarts empty, a switch made while
// Redis is away is answered "pending"; a kick, route invalidation or session listing may name the user by mail or in any
// case, and one tier-wide limit counts her whatever name she logs in with.
// Must not test kicks replayed after an outage (tier-kick-replay.test.ts) nor the other shared state (tier-proxies.test.ts).
import assert from 'node:assert/strict';
import type { World } from './harness/world.js';
import type { RedisNode } from './harness/redis.js';
import type { TcpLink } from './harness/tcp-link.js';
import { pollUntil } from './harness/ports.js';
import { startTierPair, type TierPair } from './tier-pair.js';
import { LineClient } from './harness/line-client.js';
import { adminGet, type ChildProxy } from './child-proxy.js';

const REFRESH_MS = 300;
/** Tier-wide IMAP sessions per user. */
const LIMIT = 3;
const BYE = /^\* BYE \[UNAVAILABLE\] Session closed by the administrator/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('an operator\'s tier-wide actions through any instance, also across a cut link or a stopped Redis', function () {
  this.timeout(120_000);
  let pair: TierPair;
  let world: World;
  let redis: RedisNode;
  let link: TcpLink;
  let a: ChildProxy;
  let b: ChildProxy;

  before(async () => {
    pair = await startTierPair(['oa', 'ob'], { backendView: { refreshMs: REFRESH_MS }, limits: { maxSessionsPerUser: { imap: LIMIT } } });
    ({ world, redis, link, a, b } = pair); // B reaches Redis only through the link the test can cut
  });
  after(async () => pair?.stop());

  const tierState = (p: ChildProxy, to: 'up' | 'down', from: number) => p.waitForLog((l) => l['event'] === 'tier_state' && l['to'] === to, 15_000, from);
  const maintenance = async (p: ChildProxy) => {
    const r = await adminGet(p.adminPort!, '/backends/backend-b');
    assert.equal(r.status, 200, r.body);
    return (JSON.parse(r.body) as { maintenance: boolean }).maintenance;
  };
  /** Switch backend-b's maintenance through `p`; the answer says whether the tier has it ('sent') or it is 'pending'. */
  const switchOn = async (p: ChildProxy, enabled: boolean) => {
    const r = await adminGet(p.adminPort!, `/backends/backend-b/maintenance?enabled=${enabled ? 'on' : 'off'}`, 'POST');
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as { maintenance: boolean; tier?: string; message?: string };
  };
  const both = async (want: boolean, why: string) => pollUntil(async () => (await maintenance(a)) === want && (await maintenance(b)) === want, 10_000,
    () => `backend-b maintenance ${want ? 'on' : 'off'} on both instances (${why})`);
  /** Both still `want` after several refreshes of the shared view (a flag pushed back would have come by then). */
  const stays = async (want: boolean, why: string) => {
    await sleep(REFRESH_MS * 6);
    assert.deepEqual([await maintenance(a), await maintenance(b)], [want, want], why);
  };
  const login = async (p: ChildProxy, user: string, password: string) => {
    const c = await LineClient.connect(p.port('imap', 'none'));
    await c.readLine();
    const r = await c.command('a', `LOGIN ${user} ${password}`, 10_000);
    assert.match(r, /^a OK/m, r);
    return c;
  };
  /** `/sessions?user=` through `p`: instance and login of each. */
  const sessionsOf = async (p: ChildProxy, user: string) => {
    const r = await adminGet(p.adminPort!, `/sessions?user=${encodeURIComponent(user)}`);
    assert.equal(r.status, 200, r.body);
    return (JSON.parse(r.body) as { sessions: Array<{ instance?: string; user?: string }> }).sessions.map((x) => `${x.instance} ${x.user}`).sort();
  };

  it('maintenance switched off through A while B\'s link to Redis is cut stays off on both once B is back', async () => {
    assert.equal((await switchOn(a, true)).tier, 'sent');
    await both(true, 'switched on through A');
    const fromB = b.logs.length;
    link.cut();
    await tierState(b, 'down', fromB);
    await switchOn(a, false);
    await sleep(REFRESH_MS * 2);
    assert.equal(await maintenance(b), true, 'B did not hear the switch');
    const fromB2 = b.logs.length;
    link.restore();
    await tierState(b, 'up', fromB2);
    await both(false, 'B read the switch when its link returned');
    await stays(false, 'B did not push its old flag back to the tier');
  });

  it('maintenance switched off through A while Redis is stopped reaches B once Redis answers', async () => {
    await switchOn(b, true);
    await both(true, 'switched on through B');
    const fromA = a.logs.length;
    redis.pause();
    try {
      await tierState(a, 'down', fromA);
      const answer = await switchOn(a, false);
      assert.equal(answer.maintenance, false, 'A switched at once');
      assert.equal(answer.tier, 'pending', JSON.stringify(answer));
      assert.match(answer.message ?? '', /applied here; Redis is unreachable, so it is pending tier-wide/);
      assert.equal(await maintenance(a), false, 'A switched at once');
      await a.waitForLog((l) => l['event'] === 'tier_maintenance_pending' && l['backend'] === 'backend-b' && l['enabled'] === false, 5000, fromA);
    } finally {
      redis.resume();
    }
    await a.waitForLog((l) => l['event'] === 'tier_maintenance_written' && l['backend'] === 'backend-b' && l['enabled'] === false, 10_000, fromA);
    await both(false, 'A wrote its switch when Redis answered');
    await stays(false, 'nobody pushed the older flag back');
  });

  it('after Redis restarts empty while B is cut off, the newest switch wins: an "off" is not undone by B\'s older "on", nor an "on" by an older "off"', async () => {
    for (const [first, last] of [[true, false], [false, true]] as const) {
      await switchOn(a, first);
      await both(first, `switched ${first ? 'on' : 'off'} through A`);
      const fromA = a.logs.length;
      const fromB = b.logs.length;
      link.cut();
      await tierState(b, 'down', fromB);
      await switchOn(a, last);
      await redis.restart(); // no persistence: every record is gone
      await tierState(a, 'up', fromA);
      await sleep(REFRESH_MS * 2);
      const fromB2 = b.logs.length;
      link.restore();
      await tierState(b, 'up', fromB2);
      await both(last, `B's older switch (${first ? 'on' : 'off'}) did not win over A's (${last ? 'on' : 'off'}) after Redis lost its data`);
      await stays(last, 'nobody pushed the older switch back');
    }
  });

  it('a switch made through B while its link is cut is answered pending and, outvoted by a newer one through A, is logged so and not written', async () => {
    await switchOn(a, false);
    await both(false, 'switched off through A');
    const fromB = b.logs.length;
    link.cut();
    await tierState(b, 'down', fromB);
    const answer = await switchOn(b, true);
    assert.deepEqual([answer.maintenance, answer.tier], [true, 'pending'], JSON.stringify(answer));
    await sleep(20);
    await switchOn(a, false); // newer than B's pending "on"
    const fromB2 = b.logs.length;
    link.restore();
    await b.waitForLog((l) => l['event'] === 'tier_maintenance_outvoted' && l['backend'] === 'backend-b' && l['enabled'] === true && l['newerEnabled'] === false, 10_000, fromB2);
    await both(false, 'the newer "off" through A');
    await stays(false, 'B did not write its outvoted "on"');
    assert.equal(b.logs.slice(fromB2).filter((l) => l['event'] === 'tier_maintenance_written').length, 0);
  });

  it('a route invalidation or kick naming the user by mail address or in another case closes her sessions on both instances', async () => {
    const { uid, mail, password } = world.users.alice;
    let onA = await login(a, uid, password);
    let onB = await login(b, mail, password);
    const inv = await adminGet(a.adminPort!, `/routes/invalidate?user=${encodeURIComponent(mail.toUpperCase())}`, 'POST');
    assert.equal(inv.status, 200, inv.body);
    assert.equal((JSON.parse(inv.body) as { kicked: number }).kicked, 1, inv.body);
    for (const c of [onA, onB]) assert.match(await c.readUntil(BYE, 10_000), BYE);

    onA = await login(a, mail, password);
    onB = await login(b, uid, password);
    const kick = await adminGet(b.adminPort!, '/sessions/kick?user=Alice', 'POST');
    assert.equal(kick.status, 200, kick.body);
    assert.equal((JSON.parse(kick.body) as { kicked: number }).kicked, 1, kick.body);
    for (const c of [onA, onB]) assert.match(await c.readUntil(BYE, 10_000), BYE);
  });

  it('lists a user\'s sessions on both instances by login in any case or by mail address, and counts logins by any of them against one limit', async () => {
    const { uid, mail, password } = world.users.alice;
    const capitalised = uid.charAt(0).toUpperCase() + uid.slice(1);
    await pollUntil(async () => (await sessionsOf(a, uid)).length === 0, 10_000, () => 'the sessions kicked before left the registry');
    const clients = [await login(a, uid, password), await login(b, capitalised, password), await login(a, mail, password)];
    const expected = ['oa alice', 'oa alice', 'ob alice'];
    for (const p of [a, b]) {
      for (const name of [uid, capitalised, mail, mail.toUpperCase()]) assert.deepEqual(await sessionsOf(p, name), expected, `/sessions?user=${name} through ${p === a ? 'A' : 'B'}`);
    }
    // The fourth login, by whichever name, is over the tier-wide limit of 3.
    const c = await LineClient.connect(b.port('imap', 'none'));
    await c.readLine();
    assert.match(await c.command('a', `LOGIN ${mail.toUpperCase()} ${password}`, 10_000), /^a NO \[LIMIT\]/m);
    c.close();
    for (const x of clients) x.close();
  });
});
