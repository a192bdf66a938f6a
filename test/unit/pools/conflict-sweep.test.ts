// Proves the tier-wide pool conflict sweep without Redis or sockets: which member is kept and which is closed, that health's
// own kicks are left alone, the lease, the bounded SCAN walk, the no-repeat window and the metrics.
import assert from 'node:assert/strict';
import { rankMembers, type MemberState, type PoolSpec } from '../../../src/directory/pool-route.js';
import { registry } from '../../../src/metrics.js';
import { PoolConflictSweep, findConflicts, type RegistrySession } from '../../../src/pools/conflict-sweep.js';

const POOL: PoolSpec = { name: 'store1', members: ['m1', 'm2', 'm3'].map((name) => ({ name, weight: 1 })), moveBackAfterMs: 60_000, drainWindowMs: 10_000 };
const OTHER: PoolSpec = { name: 'store2', members: ['n1', 'n2'].map((name) => ({ name, weight: 1 })), moveBackAfterMs: 0, drainWindowMs: 0 };
const up = new Map<string, MemberState>();
function userWithOrder(want: string[]): string {
  for (let i = 0; ; i++) if (want.every((w, k) => rankMembers(`c${i}`, POOL.members)[k] === w)) return `c${i}`;
}
const on = (user: string, ...backends: string[]): RegistrySession[] => backends.map((backend) => ({ user, backend }));

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name) as { values: Array<{ value: number; labels: Record<string, string> }> } | undefined;
  return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
}

describe('pool conflict sweep (tier registry)', () => {
  const u = userWithOrder(['m2', 'm1', 'm3']);

  it('keeps the user\'s current choice when it holds sessions and closes the other member', () => {
    const c = findConflicts([on(u, 'm2', 'm1', 'm1')], [POOL], () => up, 0);
    assert.deepEqual(c, [{ pool: 'store1', user: u, keep: 'm2', close: [{ member: 'm1', sessions: 2 }] }]);
  });

  it('without the choice among the holders, keeps the best-ranked holder (its own move-back follows later)', () => {
    const c = findConflicts([on(u, 'm3', 'm1')], [POOL], () => up, 0);
    assert.deepEqual(c.map((x) => [x.keep, x.close.map((y) => y.member)]), [['m1', ['m3']]]);
  });

  it('leaves a down member\'s sessions to the health kicks, and ignores users on one member or outside pools', () => {
    const down = new Map<string, MemberState>([['m2', { condition: 'down', since: 0 }]]);
    assert.deepEqual(findConflicts([on(u, 'm2', 'm1')], [POOL], () => down, 0), []);
    assert.deepEqual(findConflicts([on(u, 'm1', 'm1'), on('x', 'plain-backend', 'm1')], [POOL], () => up, 0), []);
    // Sessions in two different pools are no conflict.
    assert.deepEqual(findConflicts([on(u, 'm1', 'n1')], [POOL, OTHER], () => up, 0), []);
  });

  it('groups a user\'s sessions case-insensitively', () => {
    const c = findConflicts([[{ user: u.toUpperCase(), backend: 'm2' }, { user: u, backend: 'm3' }]], [POOL], () => up, 0);
    assert.equal(c.length, 1);
    assert.deepEqual(c[0]!.close, [{ member: 'm3', sessions: 1 }]);
  });

  describe('rounds', () => {
    let now = 0;
    let leased = true;
    let scans: Array<[string, number]> = [];
    let closes: string[] = [];
    let pages: Array<{ cursor: string; users: RegistrySession[][] } | undefined> = [];
    const make = () => new PoolConflictSweep({
      registry: {
        scanUsers: async (cursor, count) => { scans.push([cursor, count]); return pages.shift(); },
        lease: async () => leased,
      },
      leaseKey: 'k',
      pools: () => [POOL],
      statesOf: () => up,
      close: async (user, member) => { closes.push(`${user}@${member}`); },
      intervalMs: 1000,
      keysPerRound: 50,
      now: () => now,
    });
    beforeEach(() => { now = 0; leased = true; scans = []; closes = []; pages = []; });

    it('walks the registry one bounded SCAN step per round, resuming from the cursor', async () => {
      const s = make();
      pages = [{ cursor: '17', users: [] }, { cursor: '0', users: [on(u, 'm2', 'm1')] }, undefined, { cursor: '5', users: [] }];
      await s.sweepOnce();
      await s.sweepOnce();
      await s.sweepOnce(); // Redis did not answer: the cursor stays
      await s.sweepOnce();
      assert.deepEqual(scans, [['0', 50], ['17', 50], ['0', 50], ['0', 50]]);
      assert.deepEqual(closes, [`${u}@m1`]);
    });

    it('does nothing without the lease (another instance sweeps)', async () => {
      leased = false;
      pages = [{ cursor: '0', users: [on(u, 'm2', 'm1')] }];
      assert.deepEqual(await make().sweepOnce(), []);
      assert.deepEqual(scans, []);
      assert.deepEqual(closes, []);
    });

    it('closes a conflict once, again only if it is still there two rounds later; counts moves and sessions', async () => {
      const moves0 = await metric('mailproxy_pool_moves_total', { pool: 'store1', reason: 'conflict' });
      const closed0 = await metric('mailproxy_pool_sessions_closed_total', { pool: 'store1', member: 'm1', reason: 'conflict' });
      const s = make();
      const page = () => ({ cursor: '0', users: [on(u, 'm2', 'm1', 'm1')] });
      pages = [page(), page(), page()];
      await s.sweepOnce();
      now = 1000;
      await s.sweepOnce();
      now = 2001;
      await s.sweepOnce();
      assert.deepEqual(closes, [`${u}@m1`, `${u}@m1`]);
      assert.equal(await metric('mailproxy_pool_moves_total', { pool: 'store1', reason: 'conflict' }) - moves0, 2);
      assert.equal(await metric('mailproxy_pool_sessions_closed_total', { pool: 'store1', member: 'm1', reason: 'conflict' }) - closed0, 4);
    });
  });
});
