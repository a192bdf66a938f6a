// Proves the cluster's failure paths on a real child mailproxy: workers that cannot bind abort startup with a reason and a
// non-zero exit; workers orphaned by a killed primary drain their sessions (goodbye at the deadline) and exit.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { worldRawConfig, type RawConfig } from './proxy-fixture.js';
import { startChildProxy } from './child-proxy.js';

const DRAIN_MS = 1000;

function rawConfig(world: World, port = 0): RawConfig {
  return worldRawConfig(world, (c) => {
    c['workers'] = 2;
    c['log'] = { level: 'info' };
    c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port, tls: 'none' }];
    c['imap'] = { requireTlsForAuth: false };
    c['admin'] = { enabled: false };
    c['shutdown'] = { drainDeadlineMs: DRAIN_MS };
  });
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('cluster failure paths (child mailproxy)', function () {
  this.timeout(60_000);
  let world: World;
  before(async () => { world = await startWorld(); });
  after(async () => { await world?.stop(); });

  it('a listener port already in use: workers fail, the primary exits non-zero naming the reason', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as AddressInfo).port;
    try {
      const err = await startChildProxy(world, rawConfig(world, busy), { name: 'busy' }).then(() => undefined, (e: Error) => e);
      assert.ok(err, 'startup must fail');
      assert.match(err.message, /EADDRINUSE/);
      assert.match(err.message, /exited during startup/);
    } finally {
      blocker.close();
    }
  });

  it('primary killed (SIGKILL): orphaned workers stop accepting, give their sessions the deadline, say BYE and exit', async () => {
    const proxy = await startChildProxy(world, rawConfig(world), { name: 'orphans' });
    const port = proxy.port('imap', 'none');
    const workers = [...new Set(proxy.logs.filter((l) => l.msg === 'worker listening').map((l) => l['pid'] as number))];
    assert.equal(workers.length, 2);
    const sessions: LineClient[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await LineClient.connect(port);
      await c.readLine();
      assert.match(await c.command('a', `LOGIN ${world.users.alice.uid} ${world.users.alice.password}`), /^a OK/m);
      sessions.push(c);
    }
    const t0 = Date.now();
    process.kill(proxy.pid, 'SIGKILL');
    await proxy.exited;
    for (const c of sessions) assert.match(await c.command('s', 'SELECT INBOX'), /^s OK/m);
    for (const c of sessions) assert.match(await c.readUntil(/^\* BYE/, DRAIN_MS + 5000), /^\* BYE \[UNAVAILABLE\]/m);
    const byeMs = Date.now() - t0;
    for (let i = 0; i < 50 && workers.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(!workers.some(alive), 'orphaned workers exited');
    assert.ok(byeMs >= DRAIN_MS - 50, `BYE at ${byeMs} ms`);
    assert.equal(proxy.logs.filter((l) => l.msg === 'primary gone; draining').length, 2);
    console.log(`      orphans: BYE at ${byeMs} ms after the primary was killed (deadline ${DRAIN_MS} ms); worker processes reaped by ${Date.now() - t0} ms`);
  });
});
