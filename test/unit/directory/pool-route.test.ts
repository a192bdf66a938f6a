// Proves the pure pool member choice: weighted rendezvous distribution, minimal movement on membership change, and the affinity rules.
// Must not open sockets or read clocks; `now` and member states are plain values.
import assert from 'node:assert/strict';
import { choosePoolMember, drainFraction, memberCondition, normaliseUser, rankMembers, type MemberState, type PoolDecision, type PoolMember, type PoolSpec } from '../../../src/directory/pool-route.js';

const users = (n: number, prefix = 'user'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}@example.com`);
const members = (...names: string[]): PoolMember[] => names.map((name) => ({ name, weight: 1 }));
const first = (user: string, m: readonly PoolMember[]): string => rankMembers(user, m)[0]!;
const count = (list: string[], m: readonly PoolMember[]): Map<string, number> => {
  const c = new Map<string, number>();
  for (const u of list) c.set(first(u, m), (c.get(first(u, m)) ?? 0) + 1);
  return c;
};

const POOL: PoolSpec = { name: 'store1', members: members('m1', 'm2', 'm3'), moveBackAfterMs: 60_000, drainWindowMs: 10_000 };
const up = (since = 0): MemberState => ({ condition: 'up', since });
const down = (since = 0): MemberState => ({ condition: 'down', since });
const maint = (since = 0): MemberState => ({ condition: 'maintenance', since });
const states = (s: Record<string, MemberState>): Map<string, MemberState> => new Map(Object.entries(s));
/** A user whose hash order is exactly `want` (found by search, so tests name roles, not hash values). */
function userWithOrder(want: string[], m: readonly PoolMember[] = POOL.members): string {
  for (let i = 0; i < 10_000; i++) {
    const u = `probe${i}`;
    const o = rankMembers(u, m);
    if (want.every((w, k) => o[k] === w)) return u;
  }
  throw new Error(`no user with order ${want.join(',')}`);
}
function route(d: PoolDecision): Extract<PoolDecision, { kind: 'route' }> {
  assert.equal(d.kind, 'route', JSON.stringify(d));
  return d as Extract<PoolDecision, { kind: 'route' }>;
}

describe('pool route: weighted rendezvous hashing', () => {
  const many = users(30_000);

  it('is deterministic and ignores case, surrounding space and Unicode composition of the login name', () => {
    assert.deepEqual(rankMembers('Alice@Example.COM ', POOL.members), rankMembers('alice@example.com', POOL.members));
    assert.equal(normaliseUser('Jose\u0301'), normaliseUser('jos\u00e9'));
    assert.deepEqual(rankMembers('jose\u0301', POOL.members), rankMembers('jos\u00e9', POOL.members));
    // Order of the members list in the config does not matter.
    assert.deepEqual(rankMembers('bob', members('m3', 'm1', 'm2')), rankMembers('bob', POOL.members));
  });

  it('ranks every member exactly once', () => {
    for (const u of users(200)) assert.deepEqual([...rankMembers(u, POOL.members)].sort(), ['m1', 'm2', 'm3']);
  });

  it('spreads equal weights evenly (each of 3 within ±5 % of 10 000 over 30 000 users)', () => {
    const c = count(many, POOL.members);
    for (const m of ['m1', 'm2', 'm3']) assert.ok(Math.abs(c.get(m)! - 10_000) < 500, `${m}: ${c.get(m)}`);
  });

  it('honours weights 2:1:1 within ±10 % of each share over 30 000 users', () => {
    const weighted: PoolMember[] = [{ name: 'm1', weight: 2 }, { name: 'm2', weight: 1 }, { name: 'm3', weight: 1 }];
    const c = count(many, weighted);
    const expect = { m1: 15_000, m2: 7_500, m3: 7_500 };
    for (const [m, e] of Object.entries(expect)) assert.ok(Math.abs(c.get(m)! - e) <= e * 0.1, `${m}: ${c.get(m)} vs ${e}`);
  });

  it('honours fractional and uneven weights (0.5 : 1.5 : 3)', () => {
    const weighted: PoolMember[] = [{ name: 'a', weight: 0.5 }, { name: 'b', weight: 1.5 }, { name: 'c', weight: 3 }];
    const c = count(many, weighted);
    const total = 5;
    for (const m of weighted) {
      const e = (30_000 * m.weight) / total;
      assert.ok(Math.abs(c.get(m.name)! - e) <= e * 0.1, `${m.name}: ${c.get(m.name)} vs ${e}`);
    }
  });

  it('adding a 4th member moves about a quarter of the users, all of them to the new member', () => {
    const before = POOL.members;
    const after = members('m1', 'm2', 'm3', 'm4');
    let moved = 0;
    for (const u of many) {
      const a = first(u, before);
      const b = first(u, after);
      if (a !== b) {
        moved++;
        assert.equal(b, 'm4', `${u} moved ${a} → ${b}`);
      }
    }
    assert.ok(Math.abs(moved / many.length - 0.25) < 0.02, `moved ${moved}`);
  });

  it('removing a member moves only that member\'s users, spread over the others', () => {
    const after = members('m1', 'm3');
    const spread = new Map<string, number>();
    for (const u of many) {
      const a = first(u, POOL.members);
      const b = first(u, after);
      if (a === 'm2') spread.set(b, (spread.get(b) ?? 0) + 1);
      else assert.equal(b, a, `${u} moved ${a} → ${b} although its member stayed`);
    }
    const m1 = spread.get('m1')!;
    const m3 = spread.get('m3')!;
    assert.ok(Math.abs(m1 - m3) < (m1 + m3) * 0.1, `m2's users went m1 ${m1} / m3 ${m3}`);
  });

  it('changing one member\'s weight moves users only to or from that member', () => {
    const heavier: PoolMember[] = [{ name: 'm1', weight: 1 }, { name: 'm2', weight: 2 }, { name: 'm3', weight: 1 }];
    for (const u of users(5000)) {
      const a = first(u, POOL.members);
      const b = first(u, heavier);
      if (a !== b) assert.equal(b, 'm2', `${u} moved ${a} → ${b}`);
    }
  });

  it('spreads drain moments evenly over [0, 1)', () => {
    const buckets = new Array<number>(10).fill(0);
    for (const u of users(10_000)) {
      const f = drainFraction(u);
      assert.ok(f > 0 && f < 1);
      buckets[Math.floor(f * 10)]!++;
    }
    for (const b of buckets) assert.ok(Math.abs(b - 1000) < 150, buckets.join(','));
  });
});

describe('pool route: affinity rules', () => {
  const u = userWithOrder(['m2', 'm1', 'm3']);
  const all = (s: MemberState = up()) => states({ m1: s, m2: s, m3: s });

  it('no live sessions: the first choice by hash', () => {
    const d = route(choosePoolMember({ user: u, pool: POOL, states: all(), live: [], now: 1000 }));
    assert.equal(d.member, 'm2');
    assert.equal(d.reason, 'hash');
    assert.deepEqual(d.order, ['m2', 'm1', 'm3']);
    assert.deepEqual(d.kick, []);
  });

  it('members without a state entry count as up', () => {
    assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: new Map(), live: [], now: 0 })).member, 'm2');
  });

  it('first choice down: the next choice, reason failover', () => {
    const d = route(choosePoolMember({ user: u, pool: POOL, states: states({ m1: up(), m2: down(5), m3: up() }), live: [], now: 1000 }));
    assert.equal(d.member, 'm1');
    assert.equal(d.reason, 'failover');
  });

  it('first two down: the third', () => {
    assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: states({ m1: down(), m2: down(), m3: up() }), live: [], now: 1 })).member, 'm3');
  });

  it('every member down: no member', () => {
    assert.equal(choosePoolMember({ user: u, pool: POOL, states: all(down()), live: [], now: 1 }).kind, 'none');
  });

  it('first choice in maintenance and the user has nothing live: the next choice at once', () => {
    const d = route(choosePoolMember({ user: u, pool: POOL, states: states({ m1: up(), m2: maint(100), m3: up() }), live: [], now: 101 }));
    assert.equal(d.member, 'm1');
    assert.equal(d.reason, 'failover');
  });

  it('live sessions on a member that went down are closed and the user goes to the next choice', () => {
    const d = route(choosePoolMember({ user: u, pool: POOL, states: states({ m1: up(), m2: down(50), m3: up() }), live: ['m2'], now: 100 }));
    assert.equal(d.member, 'm1');
    assert.deepEqual(d.kick, [{ member: 'm2', reason: 'down' }]);
  });

  describe('first choice comes back (moveBackAfterMs 60 s)', () => {
    const back = states({ m1: up(), m2: up(10_000), m3: up() });

    it('a user with no live session anywhere goes back at once', () => {
      const d = route(choosePoolMember({ user: u, pool: POOL, states: back, live: [], now: 10_001 }));
      assert.equal(d.member, 'm2');
      assert.equal(d.reason, 'hash');
    });

    it('a user with live sessions on the failover member stays there, with the move pending', () => {
      const d = route(choosePoolMember({ user: u, pool: POOL, states: back, live: ['m1'], now: 10_001 }));
      assert.equal(d.member, 'm1');
      assert.equal(d.reason, 'live-sessions');
      assert.equal(d.target, 'm2');
      assert.deepEqual(d.pendingMove, { to: 'm2', at: 70_000, reason: 'move-back' });
      assert.deepEqual(d.kick, []);
    });

    it('one millisecond before the deadline the user still stays', () => {
      assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: back, live: ['m1'], now: 69_999 })).member, 'm1');
    });

    it('at the deadline the sessions are closed and logins wait until they are gone (never two members)', () => {
      const d = choosePoolMember({ user: u, pool: POOL, states: back, live: ['m1'], now: 70_000 });
      assert.equal(d.kind, 'wait');
      assert.deepEqual(d.kick, [{ member: 'm1', reason: 'move-back' }]);
      if (d.kind === 'wait') { assert.equal(d.holder, 'm1'); assert.equal(d.target, 'm2'); }
    });

    it('once the closed sessions are gone the user is on the first choice', () => {
      assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: back, live: [], now: 70_001 })).member, 'm2');
    });

    it('moveBackAfterMs 0 moves at once (sessions closed first)', () => {
      const d = choosePoolMember({ user: u, pool: { ...POOL, moveBackAfterMs: 0 }, states: back, live: ['m1'], now: 10_000 });
      assert.equal(d.kind, 'wait');
    });

    it('users of other members are not touched by the return', () => {
      const other = userWithOrder(['m3', 'm2', 'm1']);
      const d = route(choosePoolMember({ user: other, pool: POOL, states: back, live: ['m3'], now: 10_001 }));
      assert.equal(d.member, 'm3');
      assert.equal(d.reason, 'hash');
      assert.deepEqual(d.kick, []);
    });
  });

  it('a member added to the pool (a new first choice) takes its users the same way as a return', () => {
    const four = { ...POOL, members: members('m1', 'm2', 'm3', 'm4') };
    const nu = userWithOrder(['m4', 'm2'], four.members);
    const s = states({ m1: up(), m2: up(), m3: up(), m4: up(500) });
    assert.equal(route(choosePoolMember({ user: nu, pool: four, states: s, live: ['m2'], now: 600 })).member, 'm2');
    assert.equal(choosePoolMember({ user: nu, pool: four, states: s, live: ['m2'], now: 60_500 }).kind, 'wait');
    assert.equal(route(choosePoolMember({ user: nu, pool: four, states: s, live: [], now: 600 })).member, 'm4');
  });

  describe('maintenance (drainWindowMs 10 s)', () => {
    const s = states({ m1: up(), m2: maint(20_000), m3: up() });
    const due = 20_000 + Math.floor(drainFraction(u) * 10_000);

    it('new sessions follow live ones on the draining member until the user\'s drain moment', () => {
      const d = route(choosePoolMember({ user: u, pool: POOL, states: s, live: ['m2'], now: due - 1 }));
      assert.equal(d.member, 'm2');
      assert.equal(d.reason, 'draining');
      assert.deepEqual(d.pendingMove, { to: 'm1', at: due, reason: 'drain' });
    });

    it('at the drain moment the sessions are closed; afterwards the user is on the next choice', () => {
      const d = choosePoolMember({ user: u, pool: POOL, states: s, live: ['m2'], now: due });
      assert.equal(d.kind, 'wait');
      assert.deepEqual(d.kick, [{ member: 'm2', reason: 'drain' }]);
      assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: s, live: [], now: due })).member, 'm1');
    });

    it('drain moments of many users are spread over the window', () => {
      const moments = users(1000).map((x) => drainFraction(x) * 10_000);
      assert.ok(Math.min(...moments) < 500 && Math.max(...moments) > 9500);
    });

    it('with nowhere else to go the user stays on the draining member', () => {
      const only = states({ m1: down(), m2: maint(0), m3: down() });
      const d = route(choosePoolMember({ user: u, pool: POOL, states: only, live: ['m2'], now: 1e9 }));
      assert.equal(d.member, 'm2');
      assert.equal(d.pendingMove, undefined);
    });

    it('leaving maintenance is a return: users who moved away come back under the move-back rule', () => {
      const after = states({ m1: up(), m2: up(40_000), m3: up() });
      assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: after, live: ['m1'], now: 40_001 })).member, 'm1');
      assert.equal(choosePoolMember({ user: u, pool: POOL, states: after, live: ['m1'], now: 100_000 }).kind, 'wait');
    });
  });

  it('a user live on two members (a race without shared state) keeps the better one and the other is closed', () => {
    const d = route(choosePoolMember({ user: u, pool: POOL, states: all(), live: ['m3', 'm2'], now: 5 }));
    assert.equal(d.member, 'm2');
    assert.deepEqual(d.kick, [{ member: 'm3', reason: 'conflict' }]);
    // Neither held member is the first choice: keep the better ranked (m1), close m3.
    const e = route(choosePoolMember({ user: u, pool: POOL, states: states({ m1: up(), m2: up(1), m3: up() }), live: ['m3', 'm1'], now: 5 }));
    assert.equal(e.member, 'm1');
    assert.deepEqual(e.kick, [{ member: 'm3', reason: 'conflict' }]);
  });

  it('live sessions on a backend no longer in the pool (removed by a reload) are closed and logins wait until they are gone', () => {
    const d = choosePoolMember({ user: u, pool: POOL, states: all(), live: ['old-member', 'old-member'], now: 5 });
    assert.equal(d.kind, 'wait');
    assert.deepEqual(d.kick, [{ member: 'old-member', reason: 'removed' }]);
    assert.equal(d.kind === 'wait' && d.target, 'm2');
    assert.equal(route(choosePoolMember({ user: u, pool: POOL, states: all(), live: [], now: 5 })).member, 'm2');
  });

  it('never routes one user to two members: exhaustive over member states and live sets', () => {
    const conds: MemberState[] = [up(0), up(50_000), down(0), maint(0), maint(50_000)];
    const liveSets = [[], ['m1'], ['m2'], ['m3'], ['m1', 'm2'], ['m1', 'm3'], ['m2', 'm3'], ['m1', 'm2', 'm3']];
    for (const u2 of users(6, 'x')) {
      for (const a of conds) for (const b of conds) for (const c of conds) {
        const s = states({ m1: a, m2: b, m3: c });
        for (const live of liveSets) for (const now of [1, 55_000, 200_000]) {
          const d = choosePoolMember({ user: u2, pool: POOL, states: s, live, now });
          const kicked = new Set(d.kick.map((k) => k.member));
          // Whatever stays live after the kicks, plus where this login goes, is at most one member.
          const remaining = live.filter((m) => !kicked.has(m));
          if (d.kind === 'route') {
            assert.ok(remaining.every((m) => m === d.member), `${u2} ${JSON.stringify({ s: [...s], live, now, d })}`);
            assert.notEqual(s.get(d.member)!.condition, 'down');
          } else {
            assert.ok(remaining.length <= 1);
          }
        }
      }
    }
  });
});

describe('member condition: the tier view or local health', () => {
  const view = (down: string[] = [], maintenance: string[] = [], available = true) => ({ available, down, maintenance });

  it('without a tier view (no tier:) each instance\'s own health decides', () => {
    assert.equal(memberCondition('m1', 'down', undefined), 'down');
    assert.equal(memberCondition('m1', 'up', undefined), 'up');
    assert.equal(memberCondition('m1', 'maintenance', undefined), 'maintenance');
  });

  it('an unavailable view (Redis away at the last refresh) falls back to local health', () => {
    assert.equal(memberCondition('m1', 'down', view([], [], false)), 'down');
    assert.equal(memberCondition('m1', 'up', view(['m1\timap'], ['m1'], false)), 'up');
  });

  it('with the view available, the quorum verdict decides down and up, whatever this instance probes', () => {
    assert.equal(memberCondition('m1', 'down', view()), 'up', 'local fault alone: the tier keeps the member');
    assert.equal(memberCondition('m1', 'up', view(['m1\tpop3'])), 'down', 'the tier holds one endpoint down: the member is down');
    assert.equal(memberCondition('m1', 'up', view(['m10\timap', 'xm1\timap'])), 'up', 'other backends\' names do not match by prefix');
  });

  it('maintenance from the tier flags or this instance\'s own (an operator\'s intent) wins over down', () => {
    assert.equal(memberCondition('m1', 'up', view([], ['m1'])), 'maintenance');
    assert.equal(memberCondition('m1', 'maintenance', view()), 'maintenance');
    assert.equal(memberCondition('m1', 'up', view(['m1\timap'], ['m1'])), 'maintenance');
  });

  it('two instances that disagree locally choose the same member for every user when they share the view', () => {
    const shared = view(['m2\timap']);
    const a = new Map(['m1', 'm2', 'm3'].map((m) => [m, { condition: memberCondition(m, 'up', shared), since: 0 }] as const));
    // Instance B's own probes see m3 down and m2 up: the opposite of the tier.
    const localB: Record<string, 'up' | 'down'> = { m1: 'up', m2: 'up', m3: 'down' };
    const b = new Map(['m1', 'm2', 'm3'].map((m) => [m, { condition: memberCondition(m, localB[m]!, shared), since: 0 }] as const));
    for (const user of users(300)) {
      const da = route(choosePoolMember({ user, pool: POOL, states: a, live: [], now: 1 }));
      const db = route(choosePoolMember({ user, pool: POOL, states: b, live: [], now: 1 }));
      assert.equal(db.member, da.member, user);
      assert.notEqual(da.member, 'm2');
    }
  });
});
