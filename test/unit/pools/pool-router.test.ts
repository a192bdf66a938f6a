// Proves pool affinity at run time without sockets: health conditions, live sessions from the registry (and a tier source),
// closing due moves with the pool goodbye, waiting while they close, and the `where` explanation.
import assert from 'node:assert/strict';
import { configSchema } from '../../../src/config/schema.js';
import { rankMembers } from '../../../src/directory/pool-route.js';
import type { ProxyError } from '../../../src/errors.js';
import { registry } from '../../../src/metrics.js';
import { SessionRegistry, type SessionInfo } from '../../../src/proxy/sessions.js';
import { PoolRouter, conditionOf } from '../../../src/pools/pool-router.js';

const config = configSchema.parse({
  listeners: [{ protocol: 'imap', port: 143, tls: 'none' }],
  directory: { type: 'static', static: { file: 'x' } },
  backends: { m1: { host: 'h1' }, m2: { host: 'h2' }, m3: { host: 'h3' } },
  pools: { store1: { members: ['m1', 'm2', 'm3'], moveBackAfterMs: 60_000, drainWindowMs: 10_000 } },
});
const MEMBERS = [{ name: 'm1', weight: 1 }, { name: 'm2', weight: 1 }, { name: 'm3', weight: 1 }];
function userWithOrder(want: string[]): string {
  for (let i = 0; ; i++) if (want.every((w, k) => rankMembers(`u${i}`, MEMBERS)[k] === w)) return `u${i}`;
}

let seq = 0;
function addSession(reg: SessionRegistry, user: string, backend: string, phase: SessionInfo['phase'] = 'relay'): { kicks: ProxyError[] } {
  const kicks: ProxyError[] = [];
  const info: SessionInfo = { id: `s${++seq}`, protocol: 'imap', client: '127.0.0.1:1', user, backend, pool: 'store1', phase, startedAt: 0 };
  reg.add({ info, kick: (e) => { kicks.push(e); reg.remove(info.id); } });
  return { kicks };
}

describe('pool router (run time)', () => {
  let now = 1_000;
  const user = userWithOrder(['m2', 'm1', 'm3']);
  const make = (tier?: ConstructorParameters<typeof PoolRouter>[0]['tier']) => {
    const sessions = new SessionRegistry();
    const r = new PoolRouter({ config: () => config, sessions, now: () => now, sleep: async (ms) => { slept.push(ms); now += ms; }, ...(tier ? { tier } : {}) });
    for (const m of ['m1', 'm2', 'm3']) r.observe(m, 'unknown', now);
    return { r, sessions };
  };
  let slept: number[] = [];
  beforeEach(() => { now = 1_000; slept = []; });

  it('maps health states to member conditions', () => {
    assert.deepEqual(['unknown', 'up', 'suspect', 'down', 'maintenance'].map((s) => conditionOf(s as never)), ['up', 'up', 'up', 'down', 'maintenance']);
  });

  it('routes by hash, fails over when health says down, and answers BACKEND_DOWN when nothing serves', async () => {
    const { r } = make();
    assert.equal((await r.route('store1', user)).member, 'm2');
    r.observe('m2', 'down', now);
    const c = await r.route('store1', user);
    assert.equal(c.member, 'm1');
    assert.equal(c.decision.reason, 'failover');
    r.observe('m1', 'down', now);
    r.observe('m3', 'down', now);
    await assert.rejects(r.route('store1', user), (e: ProxyError) => e.code === 'BACKEND_DOWN');
  });

  it('suspect does not move anyone (only down or maintenance does)', async () => {
    const { r } = make();
    r.observe('m2', 'suspect', now);
    assert.equal((await r.route('store1', user)).member, 'm2');
  });

  it('a returning member gets its user back only after moveBackAfterMs when sessions are live: sweep closes them, logins wait, then move', async () => {
    const { r, sessions } = make();
    r.observe('m2', 'down', now);
    const s = addSession(sessions, user, 'm1');
    now = 5_000;
    r.observe('m2', 'up', now);
    assert.equal((await r.route('store1', user)).decision.reason, 'live-sessions');
    r.sweep();
    assert.equal(s.kicks.length, 0);
    now = 65_000;
    // A login arriving at the due moment closes the old sessions and waits for them to go.
    addSession(sessions, user, 'm1', 'login');
    await assert.rejects(r.route('store1', user), (e: ProxyError) => e.code === 'POOL_MOVING');
    assert.equal(s.kicks.length, 1);
    assert.equal(s.kicks[0]!.code, 'POOL_MOVE');
    // The login-phase session is not closed; it still counts as live, so logins keep waiting until it is gone.
    await assert.rejects(r.route('store1', user), (e: ProxyError) => e.code === 'POOL_MOVING');
    for (const x of sessions.list()) sessions.remove(x.info.id);
    // Gone now; the first login elsewhere is held back the switch grace (the old member logs the end after the goodbye).
    now = 65_100;
    assert.equal((await r.route('store1', user)).member, 'm2');
    assert.deepEqual(slept, [200]);
    assert.equal(now, 65_300);
    // A login to the same member is never held back.
    assert.equal((await r.route('store1', user)).member, 'm2');
    assert.deepEqual(slept, [200]);
    const text = await registry.metrics();
    assert.match(text, /mailproxy_pool_moves_total\{pool="store1",reason="move-back"\} [1-9]/);
    assert.match(text, /mailproxy_pool_sessions_closed_total\{pool="store1",member="m1",reason="move-back"\} [1-9]/);
  });

  it('the sweep carries out due moves for idle sessions without any login', () => {
    const { r, sessions } = make();
    r.observe('m2', 'down', now);
    const s = addSession(sessions, user, 'm1');
    r.observe('m2', 'up', 2_000);
    now = 61_999;
    r.sweep();
    assert.equal(s.kicks.length, 0);
    now = 62_000;
    r.sweep();
    assert.equal(s.kicks.length, 1);
  });

  it('maintenance drains: new sessions follow live ones until the user\'s drain moment, then they are closed', async () => {
    const { r, sessions } = make();
    const s = addSession(sessions, user, 'm2');
    r.observe('m2', 'maintenance', 10_000);
    now = 10_001;
    const c = await r.route('store1', user);
    assert.equal(c.member, 'm2');
    assert.equal(c.decision.reason, 'draining');
    now = 20_000; // past the whole 10 s window
    r.sweep();
    assert.equal(s.kicks.length, 1);
    assert.equal((await r.route('store1', user)).member, 'm1');
    assert.deepEqual(slept, [300]);
  });

  it('uses the tier registry: a session on another instance holds the user', async () => {
    const seen: string[] = [];
    const { r } = make({ list: async (u) => { seen.push(u); return { source: 'tier', sessions: [{ backend: 'm3', instance: 'other' }, { backend: 'not-a-member' }] }; } });
    const c = await r.route('store1', user);
    assert.equal(c.member, 'm3');
    assert.equal(c.decision.reason, 'live-sessions');
    assert.deepEqual(seen, [user]);
    const w = await r.where('store1', user);
    assert.deepEqual(w.live, { source: 'tier', members: ['m3'], sessions: 1 });
  });

  it('explains the route for operators without closing anything', async () => {
    const { r, sessions } = make();
    r.observe('m2', 'down', now);
    const s = addSession(sessions, user, 'm1');
    r.observe('m2', 'up', 2_000);
    now = 3_000;
    const w = await r.where('store1', user);
    assert.equal(w.member, 'm1');
    assert.equal(w.reason, 'live-sessions');
    assert.equal(w.target, 'm2');
    assert.deepEqual(w.pendingMove, { to: 'm2', at: new Date(62_000).toISOString(), reason: 'move-back' });
    assert.deepEqual(w.order.map((o) => o.member), ['m2', 'm1', 'm3']);
    assert.equal(w.order[0]!.since, new Date(2_000).toISOString());
    assert.deepEqual(w.live, { source: 'process', members: ['m1'], sessions: 1 });
    now = 100_000;
    const late = await r.where('store1', user);
    assert.equal(late.member, null);
    assert.match(late.reason, /moving/);
    assert.equal(s.kicks.length, 0);
  });

  it('a member added by a reload starts up from the moment it is first seen (its users\' live sessions are not closed at once)', async () => {
    const { r, sessions } = make();
    const four = configSchema.parse({ ...config, pools: { store1: { members: ['m1', 'm2', 'm3', 'm4'], moveBackAfterMs: 60_000 } }, backends: { ...config.backends, m4: { host: 'h4' } } });
    const r4 = new PoolRouter({ config: () => four, sessions, now: () => now });
    for (const m of ['m1', 'm2', 'm3']) r4.observe(m, 'up', 0);
    let u4 = '';
    for (let i = 0; !u4; i++) if (rankMembers(`n${i}`, [...MEMBERS, { name: 'm4', weight: 1 }])[0] === 'm4') u4 = `n${i}`;
    const held = rankMembers(u4, MEMBERS)[0]!;
    const s = addSession(sessions, u4, held);
    now = 500_000;
    assert.equal((await r4.route('store1', u4)).member, held);
    now = 559_999;
    r4.sweep();
    assert.equal(s.kicks.length, 0);
    now = 560_000;
    r4.sweep();
    assert.equal(s.kicks.length, 1);
    void r;
  });

  it('a backend probed from the start that a reload adds to the pool counts from the reload, not from its first probe', async () => {
    const sessions = new SessionRegistry();
    const backends = { ...config.backends, m4: { host: 'h4' } };
    const three = configSchema.parse({ ...config, backends });
    const four = configSchema.parse({ ...config, pools: { store1: { members: ['m1', 'm2', 'm3', 'm4'], moveBackAfterMs: 60_000 } }, backends });
    let current = three;
    now = 0;
    const r = new PoolRouter({ config: () => current, sessions, now: () => now });
    // Health probes every configured backend from the start, pool member or not (app.ts passes each one's snapshot).
    for (const m of ['m1', 'm2', 'm3', 'm4']) r.observe(m, 'up', 0);
    let u4 = '';
    for (let i = 0; !u4; i++) if (rankMembers(`n${i}`, [...MEMBERS, { name: 'm4', weight: 1 }])[0] === 'm4') u4 = `n${i}`;
    const held = rankMembers(u4, MEMBERS)[0]!;
    now = 400_000;
    assert.equal((await r.route('store1', u4)).member, held);
    const s = addSession(sessions, u4, held);
    now = 500_000;
    current = four; // SIGHUP
    r.sweep();
    assert.equal(s.kicks.length, 0, 'the held session is not closed at the reload');
    const first = await r.route('store1', u4);
    assert.equal(first.member, held);
    assert.equal(first.decision.pendingMove?.at, 560_000);
    now = 559_999;
    r.sweep();
    assert.equal(s.kicks.length, 0);
    now = 560_000;
    r.sweep();
    assert.equal(s.kicks.length, 1);
    assert.equal((await r.route('store1', u4)).member, 'm4');
    // Removed and added again: counts from the second addition.
    current = three;
    r.sweep();
    const again = addSession(sessions, u4, held);
    now = 600_000;
    current = four;
    assert.equal((await r.route('store1', u4)).member, held);
    now = 659_999;
    r.sweep();
    assert.equal(again.kicks.length, 0);
    now = 660_000;
    r.sweep();
    assert.equal(again.kicks.length, 1);
  });

  it('a member removed by a reload: its users\' sessions there are closed (reason removed) before their logins go elsewhere', async () => {
    const sessions = new SessionRegistry();
    const backends = { ...config.backends, m4: { host: 'h4' } };
    const four = configSchema.parse({ ...config, pools: { store1: { members: ['m1', 'm2', 'm3', 'm4'], moveBackAfterMs: 60_000 } }, backends });
    const three = configSchema.parse({ ...config, backends });
    let current = four;
    const r = new PoolRouter({ config: () => current, sessions, now: () => now });
    for (const m of ['m1', 'm2', 'm3', 'm4']) r.observe(m, 'up', 0);
    let u4 = '';
    for (let i = 0; !u4; i++) if (rankMembers(`n${i}`, [...MEMBERS, { name: 'm4', weight: 1 }])[0] === 'm4') u4 = `n${i}`;
    assert.equal((await r.route('store1', u4)).member, 'm4');
    const held = addSession(sessions, u4, 'm4');
    current = three; // SIGHUP
    const w = await r.where('store1', u4);
    assert.equal(w.member, null);
    assert.match(w.reason, /moving: closing the sessions on m4/);
    await assert.rejects(r.route('store1', u4), (e: ProxyError) => e.code === 'POOL_MOVING');
    assert.equal(held.kicks.length, 1);
    assert.equal(held.kicks[0]!.code, 'POOL_MOVE');
    assert.equal((await r.route('store1', u4)).member, rankMembers(u4, MEMBERS)[0]);
    // The sweep closes them too, without any login.
    const again = addSession(sessions, u4, 'm4');
    now += 5_000;
    r.sweep();
    assert.equal(again.kicks.length, 1);
  });

  it('takes member conditions from the tier view while it is available, and local health when it is not', async () => {
    const { r } = make();
    r.observeTier({ available: true, down: [], maintenance: [] }, now);
    assert.equal(r.conditionSource, 'tier');
    r.observe('m2', 'down', now);
    assert.equal((await r.route('store1', user)).member, 'm2', 'local probes alone do not move the user while the tier sees m2 up');
    now = 2_000;
    r.observeTier({ available: true, down: ['m2\timap'], maintenance: [] }, now);
    const c = await r.route('store1', user);
    assert.equal(c.member, 'm1');
    assert.equal(c.decision.reason, 'failover');
    assert.equal((await r.where('store1', user)).conditions, 'tier');
    // The tier says up again: since moves to that moment (the move-back clock starts when the tier agrees).
    now = 3_000;
    r.observe('m2', 'up', now);
    r.observeTier({ available: true, down: [], maintenance: [] }, 4_000);
    assert.equal(r.memberStates('store1').get('m2')!.since, 4_000);
    // Redis away: back to local health (m2 up locally; m3 down locally).
    r.observe('m3', 'down', 5_000);
    assert.equal(r.memberStates('store1').get('m3')!.condition, 'up');
    r.observeTier({ available: false, down: [], maintenance: [] }, 6_000);
    assert.equal(r.conditionSource, 'local');
    assert.equal(r.memberStates('store1').get('m3')!.condition, 'down');
    assert.equal((await r.where('store1', user)).conditions, 'local');
  });

  it('refuses a name that is not a pool', async () => {
    const { r } = make();
    assert.equal(r.isPool('store1'), true);
    assert.equal(r.isPool('m1'), false);
    await assert.rejects(r.route('m1', user), (e: ProxyError) => e.code === 'NO_ROUTE');
  });
});
