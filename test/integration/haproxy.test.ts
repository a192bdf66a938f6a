// Proves mailproxy behind a real HAProxy (send-proxy-v2, tcp-check, agent-check): client address end to end, failover, drain.
// Must not test PROXY header edge cases (proxy-protocol.test.ts) nor backend health (failover / health tests).
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { allocatePorts } from './harness/ports.js';
import { startHaproxy, type HaproxyInstance } from './harness/haproxy.js';
import { startProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';

const CLIENT = '127.0.0.23';
const CHECK_MS = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One line from an agent-check port, as HAProxy reads it. */
function askAgent(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.once('end', () => resolve(out));
    s.once('error', reject);
  });
}

interface Node { name: string; imapPort: number; agentPort: number; proxy?: RunningProxy }

describe('mailproxy behind a real HAProxy (send-proxy-v2, agent-check)', function () {
  this.timeout(60_000);
  let world: World;
  let haproxy: HaproxyInstance;
  const nodes: Node[] = [];

  const startNode = async (n: Node): Promise<void> => {
    n.proxy = await startProxy(worldConfig(world, (r: RawConfig) => {
      r['instanceName'] = n.name;
      r['log'] = { level: 'info' };
      r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: n.imapPort, tls: 'starttls', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] }];
      r['admin'] = { enabled: false, agentCheckPort: n.agentPort };
    }));
  };

  /** Logins by our test client that each node has served so far. */
  const served = (): Record<string, number> =>
    Object.fromEntries(nodes.map((n) => [n.name, n.proxy ? n.proxy.logs.filter((l) => l['msg'] === 'login ok' && l['client'] === CLIENT).length : 0]));

  /** Log in as alice through HAProxy; returns the open, logged-in client. */
  const login = async (localAddress = CLIENT): Promise<LineClient> => {
    const c = await LineClient.connect(haproxy.port, { localAddress });
    assert.match(await c.readLine(), /^\* OK /);
    const r = await c.command('a', `LOGIN alice ${world.users.alice.password}`);
    assert.match(r, /^a OK/m, r);
    return c;
  };
  const loginAndLogout = async (): Promise<void> => {
    const c = await login();
    await c.command('z', 'LOGOUT');
    c.close();
  };
  /** Log in until a session lands on `node` (at most 4 tries, the misses logged out); that session stays open. */
  const sessionOn = async (node: string): Promise<LineClient | undefined> => {
    for (let i = 0; i < 4; i++) {
      const before = served()[node]!;
      const c = await login();
      await sleep(20);
      if (served()[node]! > before) return c;
      await c.command('z', 'LOGOUT'); c.close();
    }
    return undefined;
  };
  const loginsDelta = async (count: number): Promise<Record<string, number>> => {
    const before = served();
    for (let i = 0; i < count; i++) await loginAndLogout();
    await sleep(50);
    const after = served();
    return Object.fromEntries(nodes.map((n) => [n.name, after[n.name]! - before[n.name]!]));
  };

  before(async () => {
    world = await startWorld();
    const [p1, a1, p2, a2] = await allocatePorts(4);
    nodes.push({ name: 'mp1', imapPort: p1!, agentPort: a1! }, { name: 'mp2', imapPort: p2!, agentPort: a2! });
    for (const n of nodes) await startNode(n);
    haproxy = await startHaproxy({
      dir: join(world.dir, 'haproxy'),
      servers: nodes.map((n) => ({ name: n.name, port: n.imapPort, agentPort: n.agentPort })),
      checkIntervalMs: CHECK_MS,
      expectGreeting: '^[*] OK',
      checkSend: 'c LOGOUT\\r\\n',
    });
    for (const n of nodes) await haproxy.waitServer(n.name, (s) => s.status === 'UP' && s.weight > 0);
  });
  after(async () => {
    await haproxy?.stop();
    for (const n of nodes) await n.proxy?.stop();
    await world?.stop();
  });

  it('the client address crosses HAProxy (PROXY v2) and mailproxy (IMAP ID) to Dovecot: rip=127.0.0.23', async () => {
    const delta = await loginsDelta(4);
    // balance roundrobin: both instances take logins
    assert.deepEqual(delta, { mp1: 2, mp2: 2 });
    let log = '';
    for (let i = 0; i < 40 && !/Login: user=<alice>.*rip=127\.0\.0\.23,/.test(log); i++) { await sleep(100); log = await world.backends.a.readLog(); }
    assert.match(log, /imap-login: Info: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.23,/);
    // HAProxy's own connection is what mailproxy's socket sees; the session is logged with the client's address
    for (const n of nodes) assert.ok(n.proxy!.logs.some((l) => l['msg'] === 'session' && l['client'] === CLIENT && l['user'] === 'alice'), n.name);
  });

  it('health checks arrive as PROXY v2 LOCAL and keep HAProxy\'s own address; the agent answers up ready 100%', async () => {
    for (const n of nodes) {
      assert.equal(await askAgent(n.agentPort), 'up ready 100%\n');
      const s = await haproxy.server(n.name);
      assert.match(s.checkStatus, /^L7OK/, JSON.stringify(s));
      assert.match(s.agentStatus, /^L7OK/, JSON.stringify(s));
      assert.ok(n.proxy!.logs.some((l) => l['client'] === '127.0.0.1' && l['msg'] === 'session'), 'check sessions logged from 127.0.0.1');
      assert.equal(n.proxy!.logs.filter((l) => l['msg'] === 'invalid PROXY header').length, 0);
    }
  });

  it('a connect-only health check (HAProxy\'s L4 check, closed with RST at once) is no client: no untrusted-PROXY warning, no session', async () => {
    const from = nodes.map((n) => n.proxy!.logs.length);
    const l4 = await startHaproxy({ dir: join(world.dir, 'haproxy-l4'), servers: nodes.map((n) => ({ name: n.name, port: n.imapPort })), checkIntervalMs: CHECK_MS });
    try {
      for (const n of nodes) await l4.waitServer(n.name, (s) => s.status === 'UP' && /^L4OK/.test(s.checkStatus));
      await sleep(CHECK_MS * 5);
    } finally {
      await l4.stop();
    }
    for (const [i, n] of nodes.entries()) {
      const logs = n.proxy!.logs.slice(from[i]);
      assert.deepEqual(logs.filter((l) => l['client'] === '0.0.0.0').map((l) => l['msg']), [], n.name);
    }
  });

  it('maintenance on mp1: the agent says drain, HAProxy sends new logins to mp2 only, mp1\'s open session keeps working', async () => {
    // an established session on mp1
    const held = await sessionOn('mp1');
    assert.ok(held, 'a session landed on mp1');
    const mp1 = nodes[0]!;
    mp1.proxy!.app.maintenance = true;
    assert.equal(await askAgent(mp1.agentPort), 'drain\n');
    const { ms } = await haproxy.waitServer('mp1', (s) => s.status.startsWith('DRAIN'));
    assert.ok(ms < CHECK_MS * 5, `HAProxy drained mp1 after ${ms} ms`);
    assert.deepEqual(await loginsDelta(4), { mp1: 0, mp2: 4 });
    assert.match(await held.command('s', 'SELECT INBOX'), /^s OK/m);
    await held.command('z', 'LOGOUT');
    held.close();

    mp1.proxy!.app.maintenance = false;
    assert.equal(await askAgent(mp1.agentPort), 'up ready 100%\n');
    const back = await haproxy.waitServer('mp1', (s) => s.status === 'UP' && s.weight > 0);
    assert.ok(back.ms < CHECK_MS * 5, `HAProxy restored mp1 after ${back.ms} ms: ${JSON.stringify(back.stat)}`);
    assert.deepEqual(await loginsDelta(2), { mp1: 1, mp2: 1 });
  });

  it('stopping mp1 (app.close): logins right after it and after HAProxy marks it DOWN all land on mp2', async () => {
    const mp1 = nodes[0]!;
    await mp1.proxy!.stop();
    const stoppedAt = Date.now();
    // before the health check notices: a refused connect is retried on the other server (option redispatch)
    const early = await loginsDelta(4);
    assert.equal(early['mp2'], 4, JSON.stringify(early));
    const { ms } = await haproxy.waitServer('mp1', (s) => s.status.startsWith('DOWN'));
    const detected = Date.now() - stoppedAt;
    assert.ok(detected < CHECK_MS * 10, `HAProxy marked mp1 DOWN ${detected} ms after stop (waited ${ms} ms)`);
    const before = served()['mp2']!;
    for (let i = 0; i < 4; i++) await loginAndLogout();
    await sleep(50);
    assert.equal(served()['mp2']! - before, 4);
  });

  it('restarting mp1 on the same ports: HAProxy takes it back and it serves logins again', async () => {
    const mp1 = nodes[0]!;
    await startNode(mp1);
    const { ms } = await haproxy.waitServer('mp1', (s) => s.status === 'UP' && s.weight > 0);
    assert.ok(ms < CHECK_MS * 10, `UP after ${ms} ms`);
    const delta = await loginsDelta(4);
    assert.ok(delta['mp1']! >= 1 && delta['mp2']! >= 1, JSON.stringify(delta));
  });

  it('draining mp2 (app.drain, as on SIGTERM): the agent says drain, new logins go to mp1, mp2\'s open session continues', async () => {
    const mp2 = nodes[1]!;
    const held = await sessionOn('mp2');
    assert.ok(held, 'a session landed on mp2');
    await mp2.proxy!.app.drain();
    assert.equal(await askAgent(mp2.agentPort), 'drain\n');
    assert.equal(mp2.proxy!.app.readiness().ready, false);
    // the closed listener fails the tcp-check (DOWN) and the agent says drain (DRAIN), whichever HAProxy sees first
    await haproxy.waitServer('mp2', (s) => /^(DRAIN|DOWN)/.test(s.status));
    assert.deepEqual(await loginsDelta(4), { mp1: 4, mp2: 0 });
    assert.match(await held.command('n', 'NOOP'), /^n OK/m);
    assert.match(await held.command('s', 'SELECT INBOX'), /^s OK/m);
    await held.command('z', 'LOGOUT');
    held.close();
  });
});
