// Proves pool affinity end to end with real components: three (then four) Dovecots on one mail root, three mailproxy
// processes behind HAProxy, 300 users over IMAP and POP3. Where every session landed and when comes from Dovecot's own logs.
// Must not use the proxy's logs as evidence of placement (they are the system under test).
import assert from 'node:assert/strict';
import { rankMembers } from '../../src/directory/pool-route.js';
import { adminGet, metricValue } from './child-proxy.js';
import { findOverlaps, membersByUser as placement } from './harness/dovecot-sessions.js';
import { pollUntil } from './harness/ports.js';
import { startPoolWorld, type PoolWorld } from './harness/pool-world.js';
import type { TestUser } from './harness/users.js';
import { holdImap, imapOnce, pop3Once, runAll, sleep, untilOk } from './pool-clients.js';
import { backendState, eq, loginRound, only, poolProxyConfig, servedIn as servedInWorld, shares, startPoolNodes, waitState as waitStateOn, type PoolMembersConfig, type PoolNode, type PoolNodes } from './pool-nodes.js';

const USERS = 300;
const MOVE_BACK_MS = 3000;

describe('pool affinity: 3 Dovecots on shared storage, 3 mailproxies behind HAProxy, 300 users', function () {
  this.timeout(600_000);
  let w: PoolWorld;
  let directoryFile: string;
  let nodes: PoolNode[] = [];
  let set: PoolNodes | undefined;
  const report: string[] = [];

  const rawConfig = (n: PoolNode, members: PoolMembersConfig) => poolProxyConfig(w, directoryFile, n.name, n.ports, members, { moveBackAfterMs: MOVE_BACK_MS, drainWindowMs: 2000 });
  const state = backendState;
  const waitState = (backend: string, pred: (s: string) => boolean): Promise<void> => waitStateOn(nodes, backend, pred);
  /** One IMAP and one POP3 login+logout per user, spread by HAProxy over the three proxies. */
  const round = (users: readonly TestUser[], via: { imap: number; pop3: number } = { imap: set!.hImap.port, pop3: set!.hPop3.port }) => loginRound(users, via);
  const servedIn = (r: { from: number; to: number }, users: readonly TestUser[] = w.users) => servedInWorld(w, r, users);

  before(async () => {
    w = await startPoolWorld({ members: 3, users: USERS });
    directoryFile = await w.writeDirectory('store1');
    set = await startPoolNodes(w, ['mp1', 'mp2', 'mp3'], (name, ports) => poolProxyConfig(w, directoryFile, name, ports, ['member1', 'member2', 'member3'], { moveBackAfterMs: MOVE_BACK_MS, drainWindowMs: 2000 }));
    nodes = set.nodes;
    for (const m of ['member1', 'member2', 'member3']) await waitState(m, (s) => s === 'up');
  });

  after(async () => {
    if (report.length) process.stdout.write(`      pool figures:\n${report.map((l) => `        ${l}`).join('\n')}\n`);
    await set?.stop();
    await w?.stop();
  });

  let baseline: Map<string, string>;

  it('every user lands on exactly one member, the one rendezvous hashing names, through all three proxies', async () => {
    const r = await round(w.users);
    baseline = await servedIn(r);
    for (const u of w.users) assert.equal(baseline.get(u.uid), rankMembers(u.uid, eq(['member1', 'member2', 'member3']))[0], u.uid);
    const s = shares(baseline);
    report.push(`1:1:1 shares ${JSON.stringify(s)} (${r.temps} temporary refusals)`);
    for (const m of ['member1', 'member2', 'member3']) assert.ok(Math.abs(s[m]! - 100) <= 20, JSON.stringify(s));
    // Every proxy served some of it (HAProxy round robin).
    for (const n of nodes) assert.ok(n.proxy.logs.some((l) => l.msg === 'login ok'), `${n.name} served nobody`);
  });

  let duringOutage: Map<string, string>;

  it('stopping member 2 moves only its users (about a third), each to its next choice', async () => {
    await w.stopMember('member2');
    await waitState('member2', (s) => s === 'down');
    const r = await round(w.users);
    duringOutage = await servedIn(r);
    let moved = 0;
    for (const u of w.users) {
      const before = baseline.get(u.uid)!;
      const now = duringOutage.get(u.uid)!;
      if (before === 'member2') {
        moved++;
        assert.equal(now, rankMembers(u.uid, eq(['member1', 'member2', 'member3']))[1], `${u.uid}: not its second choice`);
      } else {
        assert.equal(now, before, `${u.uid} moved from ${before} to ${now} although its member stayed up`);
      }
    }
    report.push(`member2 stopped: ${moved}/${USERS} users moved (${((100 * moved) / USERS).toFixed(1)} %), no one else`);
    assert.ok(moved > USERS * 0.25 && moved < USERS * 0.42, `moved ${moved}`);
  });

  it('restarting member 2 moves its users back with zero overlap (held sessions closed after moveBackAfterMs)', async () => {
    const mp1 = nodes[0]!;
    const returning = w.users.filter((u) => baseline.get(u.uid) === 'member2');
    const others = w.users.filter((u) => baseline.get(u.uid) !== 'member2').slice(0, 30);
    const heldUsers = returning.slice(0, 30);
    // Long-lived sessions (IDLE clients) on the failover members, through mp1: without `tier:` only that proxy knows them.
    const held = await Promise.all(heldUsers.map((u) => holdImap(mp1.ports.imap, u.uid, u.password)));
    const t0 = Date.now();
    await w.startMember('member2');
    await pollUntil(async () => (await state(mp1, 'member2')) !== 'down', 20_000, () => 'member2 up on mp1');
    const upAt = Date.now();
    // Logins of the returning users (through mp1, which holds their sessions) and of others (through HAProxy) all along.
    let temps = 0;
    const until = upAt + MOVE_BACK_MS + 2500;
    const churn = async (users: readonly TestUser[], via: { imap: number; pop3: number }): Promise<void> => {
      while (Date.now() < until) {
        await runAll(users, 6, async (u) => {
          temps += await untilOk(() => imapOnce(via.imap, u.uid, u.password));
          temps += await untilOk(() => pop3Once(via.pop3, u.uid, u.password));
        });
      }
    };
    await Promise.all([churn(returning, { imap: mp1.ports.imap, pop3: mp1.ports.pop3 }), churn(others, { imap: set!.hImap.port, pop3: set!.hPop3.port })]);
    const byes = await Promise.all(held.map((h) => Promise.race([h.byeAt, sleep(5000).then(() => undefined)])));
    for (const h of held) h.client.close();
    // After the window: one more login each, and every returning user is back on member2.
    const last = await round(returning, { imap: mp1.ports.imap, pop3: mp1.ports.pop3 });
    const back = await servedIn(last, returning);
    for (const u of returning) assert.equal(back.get(u.uid), 'member2', `${u.uid} not back`);
    const sessions = await w.sessions();
    const overlaps = findOverlaps(sessions, Date.now());
    // When mp1 itself saw member2 come back (its own log), the start of moveBackAfterMs.
    const upLine = mp1.proxy.logs.find((l) => l['event'] === 'pool_member_condition' && l['member'] === 'member2' && l['to'] === 'up' && Date.parse(String(l['time'])) >= t0);
    assert.ok(upLine, 'mp1 logged member2 back up');
    const upSeen = Date.parse(String(upLine['time']));
    const closedAfter = byes.filter((b): b is number => b !== undefined).map((b) => b - upSeen);
    report.push(`member2 restarted: ${returning.length} users returning, ${heldUsers.length} with held sessions closed ${Math.min(...closedAfter)}–${Math.max(...closedAfter)} ms after member2 was up (moveBackAfterMs ${MOVE_BACK_MS}); ${temps} temporary refusals; overlap moments: ${overlaps.length}`);
    const iso = (t: number | undefined) => (t === undefined ? 'open' : new Date(t).toISOString());
    const moves = (user: string) => nodes.flatMap((n) => n.proxy.logs.filter((l) => l['user'] === user && (l['event'] === 'pool_move' || l.msg === 'login ok' || l['summary'] === true))
      .map((l) => `${n.name} ${String(l['time'])} ${String(l.msg)} ${String(l['protocol'] ?? '')} ${String(l['backend'] ?? l['from'] ?? '')} ${String(l['reason'] ?? '')}`));
    assert.deepEqual(overlaps.map((o) => `${o.user}: ${o.a.member} ${o.a.protocol} ${o.a.session} ${iso(o.a.start)}..${iso(o.a.end)} / ${o.b.member} ${o.b.protocol} ${o.b.session} ${iso(o.b.start)}..${iso(o.b.end)} = ${o.ms.toFixed(3)} ms\n${moves(o.user).slice(-12).join('\n')}`), [], 'one user on two members at once');
    assert.equal(closedAfter.length, heldUsers.length, 'every held session was closed for the move');
    // Closed by the sweep (every second) once moveBackAfterMs had passed, or at a login after it.
    for (const ms of closedAfter) assert.ok(ms >= MOVE_BACK_MS - 50 && ms < MOVE_BACK_MS + 3000, `held session closed ${ms} ms after member2 came up`);
    // No one else moved.
    const all = placement(sessions, t0, Infinity);
    for (const u of others) assert.equal(only(all.get(u.uid), u.uid), baseline.get(u.uid));
    // Users without held sessions went back at once.
    const early = placement(sessions, upAt + 1000, upAt + MOVE_BACK_MS - 500);
    for (const u of returning.slice(30)) if (early.has(u.uid)) assert.equal(only(early.get(u.uid), u.uid), 'member2', `${u.uid} had nothing live, should be back at once`);
    const metrics = (await adminGet(mp1.proxy.adminPort!, '/metrics')).body;
    assert.ok((metricValue(metrics, 'mailproxy_pool_moves_total{pool="store1",reason="move-back"}') ?? 0) >= heldUsers.length, 'moves metric');
  });

  it('adding a fourth member moves about a quarter of the users, all of them to the new member', async () => {
    await w.addMember('member4');
    directoryFile = await w.writeDirectory('store1');
    for (const n of nodes) {
      const from = n.proxy.logs.length;
      n.proxy.writeConfig(rawConfig(n, ['member1', 'member2', 'member3', 'member4']));
      n.proxy.signal('SIGHUP');
      await n.proxy.waitForLog((l) => l.msg === 'configuration reloaded', 20_000, from);
    }
    await waitState('member4', (s) => s === 'up');
    const r = await round(w.users);
    const after = await servedIn(r);
    let moved = 0;
    for (const u of w.users) {
      if (after.get(u.uid) === baseline.get(u.uid)) continue;
      moved++;
      assert.equal(after.get(u.uid), 'member4', `${u.uid} moved ${baseline.get(u.uid)} → ${after.get(u.uid)}`);
    }
    report.push(`member4 added: ${moved}/${USERS} users moved (${((100 * moved) / USERS).toFixed(1)} %), all to member4`);
    assert.ok(moved > USERS * 0.18 && moved < USERS * 0.32, `moved ${moved}`);
  });

  it('weights 2:1:1 give shares within ±10 %', async () => {
    for (const n of nodes) {
      const from = n.proxy.logs.length;
      n.proxy.writeConfig(rawConfig(n, [{ backend: 'member1', weight: 2 }, 'member2', 'member3']));
      n.proxy.signal('SIGHUP');
      await n.proxy.waitForLog((l) => l.msg === 'configuration reloaded', 20_000, from);
    }
    const r = await round(w.users);
    const s = shares(await servedIn(r));
    report.push(`2:1:1 shares ${JSON.stringify(s)}`);
    assert.ok(Math.abs(s['member1']! - 150) <= 15, JSON.stringify(s));
    assert.ok(Math.abs(s['member2']! - 75) <= 7.5, JSON.stringify(s));
    assert.ok(Math.abs(s['member3']! - 75) <= 7.5, JSON.stringify(s));
    assert.equal(s['member4'], undefined);
  });
});
