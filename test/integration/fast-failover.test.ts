// Proves that a failover faster than down detection (the service address moves to the standby node within a probe
// interval, the old node dead but its TCP connections never reset) does not leave spliced sessions hanging on the old
// node: the identity change closes them with the protocol's goodbye, while sessions on the new node stay.
// Real Dovecot on both nodes; a TCP forwarder is the moving address. Must not test split brain (backend-faults does).
import assert from 'node:assert/strict';
import { startForwarder, type Forwarder } from './harness/alternating-forwarder.js';
import { LineClient } from './harness/line-client.js';
import { startWorld, type World } from './harness/world.js';
import { startProxy, worldConfig, type RunningProxy } from './proxy-fixture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('failover faster than down detection (real Dovecot, a moving address)', function () {
  this.timeout(60_000);
  let world: World;
  let fwd: Forwarder | undefined;
  let proxy: RunningProxy | undefined;
  const clients: LineClient[] = [];

  before(async () => { world = await startWorld(); });
  after(async () => {
    world?.backends.a.resume();
    for (const c of clients) c.close();
    await proxy?.stop();
    await fwd?.close();
    await world?.stop();
  });

  async function idling(port: number): Promise<LineClient> {
    const c = await LineClient.connect(port, { timeoutMs: 10_000 });
    clients.push(c);
    await c.readLine();
    assert.match(await c.command('a', `LOGIN alice ${world.users.alice.password}`), /^a OK/m);
    assert.match(await c.command('b', 'SELECT INBOX'), /^b OK/m);
    c.send('c IDLE');
    await c.readUntil(/^\+ /m);
    return c;
  }

  it('sessions on the old node get their goodbye once the other node answers; sessions on the new node stay', async () => {
    fwd = await startForwarder([world.backends.a.ports.imap, world.backends.b.ports.imap]);
    fwd.mode = 0;
    proxy = await startProxy(worldConfig(world, (raw) => {
      raw['log'] = { level: 'info' };
      const backends = raw['backends'] as Record<string, unknown>;
      // Only the moving address: backend-a's other endpoints would see node A stop and go down (a different path).
      backends['backend-a'] = { host: '127.0.0.1', imap: { port: fwd!.port, tls: 'none' }, tlsVerify: false, trustsProxy: true };
      raw['health'] = { enabled: true, intervalMs: 250, fastIntervalMs: 100, timeoutMs: 1500, kickWindowMs: 500 };
    }));
    const app = proxy.app;
    const identity = () => app.monitor.snapshot().find((b) => b.backend === 'backend-a')?.endpoints.find((e) => e.protocol === 'imap')?.lastProbe?.identity;
    for (let i = 0; i < 300 && identity() === undefined; i++) await sleep(50);
    assert.match(identity() ?? '', /backend-a/);
    const port = proxy.port('imap', 'starttls');
    const onOld = await Promise.all([idling(port), idling(port)]);

    // The address moves to node B and node A hangs: its connections stay open, nothing answers on them.
    fwd.mode = 1;
    world.backends.a.pause();
    const movedAt = Date.now();
    const onNew = await idling(port);
    for (const c of onOld) {
      const bye = await c.readUntil(/^\* BYE/m, 10_000);
      assert.match(bye, /\* BYE \[UNAVAILABLE\]/);
    }
    console.log(`      sessions on the old node closed ${Date.now() - movedAt} ms after the move`);
    assert.equal(app.monitor.stateOf('backend-a', 'imap'), 'up', 'the address never stopped answering: not a down backend');
    // The session that logged in on node B is not touched.
    assert.equal(await onNew.anyDataWithin(1500), false, 'no goodbye for the session on the new node');
    onNew.send('DONE');
    assert.match(await onNew.readUntil(/^c OK/m), /^c OK/m);
  });
});
