// Proves pool affinity end to end with real components: three (then four) Dovecots on one mail root, three mailproxy
// processes behind HAProxy, 300 users over IMAP and POP3. Where every session landed and when comes from Dovecot's own logs.
// Must not use the proxy's logs as evidence of placement (they are the system under test).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { rankMembers, type PoolMember } from '../../src/directory/pool-route.js';
import { adminGet, metricValue, startChildProxy, type ChildProxy } from './child-proxy.js';
import { findOverlaps, membersByUser as placement } from './harness/dovecot-sessions.js';
import { startHaproxy, type HaproxyInstance } from './harness/haproxy.js';
import { allocatePorts, pollUntil } from './harness/ports.js';
import { startPoolWorld, type PoolWorld } from './harness/pool-world.js';
import type { TestUser } from './harness/users.js';
import { holdImap, imapOnce, pop3Once, runAll, sleep, untilOk } from './pool-clients.js';
import type { RawConfig } from './proxy-fixture.js';

const USERS = 300;
const MOVE_BACK_MS = 3000;
const CONCURRENCY = 12;

interface Node { name: string; ports: { imapPp: number; pop3Pp: number; imap: number; pop3: number }; proxy?: ChildProxy }

const eq = (names: string[]): PoolMember[] => names.map((name) => ({ name, weight: 1 }));
function only(set: Set<string> | undefined, user: string): string {
  assert.ok(set, `${user} has no session in this round`);
  assert.equal(set.size, 1, `${user} was served by ${[...set].join(' and ')} in one round`);
  return [...set][0]!;
}
function shares(map: Map<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of map.values()) out[m] = (out[m] ?? 0) + 1;
  return out;
}

describe('pool affinity: 3 Dovecots on shared storage, 3 mailproxies behind HAProxy, 300 users', function () {
  this.timeout(600_000);
  let w: PoolWorld;
  let directoryFile: string;
  const nodes: Node[] = [];
  let hImap: HaproxyInstance;
  let hPop3: HaproxyInstance;
  const report: string[] = [];

  const rawConfig = (n: Node, members: Array<string | { backend: string; weight: number }>): RawConfig => ({
    instanceName: n.name,
    log: { level: 'info' },
    listeners: [
      { protocol: 'imap', address: '127.0.0.1', port: n.ports.imapPp, tls: 'none', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
      { protocol: 'pop3', address: '127.0.0.1', port: n.ports.pop3Pp, tls: 'none', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
      { protocol: 'imap', address: '127.0.0.1', port: n.ports.imap, tls: 'none' },
      { protocol: 'pop3', address: '127.0.0.1', port: n.ports.pop3, tls: 'none' },
    ],
    imap: { requireTlsForAuth: false, limits: { authFailureDelayMs: 0 } },
    pop3: { requireTlsForAuth: false, limits: { authFailureDelayMs: 0 } },
    directory: { type: 'static', static: { file: directoryFile } },
    backends: Object.fromEntries(w.members.map((m) => [m.name, { host: '127.0.0.1', imap: { port: m.dovecot.ports.imap }, pop3: { port: m.dovecot.ports.pop3 }, trustsProxy: true }])),
    pools: { store1: { members, moveBackAfterMs: MOVE_BACK_MS, drainWindowMs: 2000 } },
    health: { intervalMs: 300, timeoutMs: 1000, rise: 2, fall: 2, kickWindowMs: 300 },
    admin: { address: '127.0.0.1', port: 0 },
  });

  const state = async (n: Node, backend: string): Promise<string> => {
    const r = await adminGet(n.proxy!.adminPort!, `/backends/${backend}`);
    return (JSON.parse(r.body) as { state: string }).state;
  };
  const waitState = (backend: string, pred: (s: string) => boolean): Promise<void> =>
    pollUntil(async () => (await Promise.all(nodes.map((n) => state(n, backend)))).every(pred), 20_000, () => `${backend} state on every proxy`);

  /** One IMAP and one POP3 login+logout per user, spread by HAProxy over the three proxies. */
  const round = async (users: readonly TestUser[], via: { imap: number; pop3: number } = { imap: hImap.port, pop3: hPop3.port }): Promise<{ from: number; to: number; temps: number }> => {
    const from = Date.now();
    let temps = 0;
    await runAll(users, CONCURRENCY, async (u) => {
      temps += await untilOk(() => imapOnce(via.imap, u.uid, u.password));
      temps += await untilOk(() => pop3Once(via.pop3, u.uid, u.password));
    });
    await sleep(300); // Dovecot writes disconnect lines asynchronously
    return { from, to: Date.now(), temps };
  };
  /** Each user's one member in a round (asserting exactly one), from the backends' logs. */
  const servedIn = async (r: { from: number; to: number }, users: readonly TestUser[] = w.users): Promise<Map<string, string>> => {
    const p = placement(await w.sessions(), r.from, r.to);
    return new Map(users.map((u) => [u.uid, only(p.get(u.uid), u.uid)]));
  };

  before(async () => {
    w = await startPoolWorld({ members: 3, users: USERS });
    directoryFile = await w.writeDirectory('store1');
    for (let i = 0; i < 3; i++) nodes.push({ name: `mp${i + 1}`, ports: { imapPp: 0, pop3Pp: 0, imap: 0, pop3: 0 } });
    await Promise.all(nodes.map(async (n) => {
      // Ports are allocated, then bound by the child: another test run may take one in between, so try fresh ones.
      for (let attempt = 1; ; attempt++) {
        const [imapPp, pop3Pp, imap, pop3] = (await allocatePorts(4)) as [number, number, number, number];
        n.ports = { imapPp, pop3Pp, imap, pop3 };
        try {
          n.proxy = await startChildProxy(w, rawConfig(n, ['member1', 'member2', 'member3']), { name: n.name, timeoutMs: 60_000 });
          return;
        } catch (e) {
          if (attempt >= 3 || !/EADDRINUSE/.test((e as Error).message)) throw e;
        }
      }
    }));
    [hImap, hPop3] = await Promise.all([
      startHaproxy({ dir: join(w.dir, 'haproxy-imap'), servers: nodes.map((n) => ({ name: n.name, port: n.ports.imapPp })), checkIntervalMs: 500 }),
      startHaproxy({ dir: join(w.dir, 'haproxy-pop3'), servers: nodes.map((n) => ({ name: n.name, port: n.ports.pop3Pp })), checkIntervalMs: 500 }),
    ]);
    for (const h of [hImap, hPop3]) for (const n of nodes) await h.waitServer(n.name, (s) => s.status.startsWith('UP'), 20_000);
    for (const m of ['member1', 'member2', 'member3']) await waitState(m, (s) => s === 'up');
  });

  after(async () => {
    if (report.length) process.stdout.write(`      pool figures:\n${report.map((l) => `        ${l}`).join('\n')}\n`);
    await Promise.allSettled([hImap?.stop(), hPop3?.stop(), ...nodes.map((n) => n.proxy?.stop())]);
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
    for (const n of nodes) assert.ok(n.proxy!.logs.some((l) => l.msg === 'login ok'), `${n.name} served nobody`);
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
    await Promise.all([churn(returning, { imap: mp1.ports.imap, pop3: mp1.ports.pop3 }), churn(others, { imap: hImap.port, pop3: hPop3.port })]);
    const byes = await Promise.all(held.map((h) => Promise.race([h.byeAt, sleep(5000).then(() => undefined)])));
    for (const h of held) h.client.close();
    // After the window: one more login each, and every returning user is back on member2.
    const last = await round(returning, { imap: mp1.ports.imap, pop3: mp1.ports.pop3 });
    const back = await servedIn(last, returning);
    for (const u of returning) assert.equal(back.get(u.uid), 'member2', `${u.uid} not back`);
    const sessions = await w.sessions();
    const overlaps = findOverlaps(sessions, Date.now());
    // When mp1 itself saw member2 come back (its own log), the start of moveBackAfterMs.
    const upLine = mp1.proxy!.logs.find((l) => l['event'] === 'pool_member_condition' && l['member'] === 'member2' && l['to'] === 'up' && Date.parse(String(l['time'])) >= t0);
    assert.ok(upLine, 'mp1 logged member2 back up');
    const upSeen = Date.parse(String(upLine['time']));
    const closedAfter = byes.filter((b): b is number => b !== undefined).map((b) => b - upSeen);
    report.push(`member2 restarted: ${returning.length} users returning, ${heldUsers.length} with held sessions closed ${Math.min(...closedAfter)}–${Math.max(...closedAfter)} ms after member2 was up (moveBackAfterMs ${MOVE_BACK_MS}); ${temps} temporary refusals; overlap moments: ${overlaps.length}`);
    const iso = (t: number | undefined) => (t === undefined ? 'open' : new Date(t).toISOString());
    const moves = (user: string) => nodes.flatMap((n) => n.proxy!.logs.filter((l) => l['user'] === user && (l['event'] === 'pool_move' || l.msg === 'login ok' || l['summary'] === true))
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
    const metrics = (await adminGet(mp1.proxy!.adminPort!, '/metrics')).body;
    assert.ok((metricValue(metrics, 'mailproxy_pool_moves_total{pool="store1",reason="move-back"}') ?? 0) >= heldUsers.length, 'moves metric');
  });

  it('adding a fourth member moves about a quarter of the users, all of them to the new member', async () => {
    await w.addMember('member4');
    directoryFile = await w.writeDirectory('store1');
    for (const n of nodes) {
      const from = n.proxy!.logs.length;
      n.proxy!.writeConfig(rawConfig(n, ['member1', 'member2', 'member3', 'member4']));
      n.proxy!.signal('SIGHUP');
      await n.proxy!.waitForLog((l) => l.msg === 'configuration reloaded', 20_000, from);
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
      const from = n.proxy!.logs.length;
      n.proxy!.writeConfig(rawConfig(n, [{ backend: 'member1', weight: 2 }, 'member2', 'member3']));
      n.proxy!.signal('SIGHUP');
      await n.proxy!.waitForLog((l) => l.msg === 'configuration reloaded', 20_000, from);
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
