// Proves the single-process lifecycle on a real child mailproxy in front of slapd + Dovecot: SIGHUP reload (valid and
// refused) keeps live sessions, SIGTERM drains (refuse new, readiness 503, agent drain, sessions until the deadline, BYE, exit 0).
import assert from 'node:assert/strict';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { worldRawConfig, type RawConfig } from './proxy-fixture.js';
import { adminGet, agentSays, msUntilRefused, startChildProxy, type ChildProxy } from './child-proxy.js';
import { allocatePorts } from './harness/ports.js';
import { createServer } from 'node:net';

const DRAIN_MS = 1500;

function lifecycleRawConfig(world: World, greeting: string, extra: (c: RawConfig) => void = () => undefined): RawConfig {
  return worldRawConfig(world, (c) => {
    c['log'] = { level: 'info' };
    c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
    c['imap'] = { greeting, requireTlsForAuth: false, limits: { authFailureDelayMs: 300, authFailureMaxDelayMs: 300 } };
    c['admin'] = { enabled: true, address: '127.0.0.1', port: 0, agentCheckPort: 0 };
    c['shutdown'] = { drainDeadlineMs: DRAIN_MS };
    extra(c);
  });
}

describe('lifecycle: SIGHUP reload and SIGTERM drain (single process, child mailproxy)', function () {
  this.timeout(60_000);
  let world: World;
  let proxy: ChildProxy;
  let port: number;
  let loggedIn: LoggedIn;
  let anon: LineClient;

  interface LoggedIn { c: LineClient; n: number }
  const ok = async (s: LoggedIn, cmd: string) => {
    const tag = `t${++s.n}`;
    const r = await s.c.command(tag, cmd);
    assert.match(r, new RegExp(`^${tag} OK`, 'm'), r);
    return r;
  };
  const greetingOf = async () => {
    const c = await LineClient.connect(port);
    const g = await c.readLine();
    c.close();
    return g;
  };

  before(async () => {
    world = await startWorld();
    proxy = await startChildProxy(world, lifecycleRawConfig(world, 'greeting one'), { name: 'lifecycle' });
    port = proxy.port('imap', 'none');
  });
  after(async () => {
    loggedIn?.c.close();
    anon?.close();
    await proxy?.stop();
    await world?.stop();
  });

  it('serves a logged-in session and an unauthenticated one; /readyz 200 and agent up', async () => {
    const c = await LineClient.connect(port);
    assert.match(await c.readLine(), /^\* OK .*greeting one$/);
    loggedIn = { c, n: 0 };
    await ok(loggedIn, `LOGIN ${world.users.alice.uid} ${world.users.alice.password}`);
    await ok(loggedIn, 'SELECT INBOX');
    anon = await LineClient.connect(port);
    assert.match(await anon.readLine(), /greeting one$/);
    assert.equal((await adminGet(proxy.adminPort!, '/readyz')).status, 200);
    assert.match(await agentSays(proxy.agentPort!), /^up\b/);
  });

  it('SIGHUP with a changed greeting: new connections see it; both old sessions carry on', async () => {
    const from = proxy.logs.length;
    proxy.writeConfig(lifecycleRawConfig(world, 'greeting two'));
    proxy.signal('SIGHUP');
    await proxy.waitForLog((l) => l.msg === 'configuration reloaded', 10_000, from);
    assert.match(await greetingOf(), /^\* OK .*greeting two$/);
    await ok(loggedIn, 'NOOP');
    await ok(loggedIn, 'SELECT INBOX');
    const r = await anon.command('n1', 'NOOP');
    assert.match(r, /^n1 OK/m, r);
  });

  it('SIGHUP with an unknown key or an unreadable certificate: refused with the reason logged; nothing changes', async () => {
    let from = proxy.logs.length;
    proxy.writeConfig(lifecycleRawConfig(world, 'greeting three', (c) => { c['bogusKey'] = 1; }));
    proxy.signal('SIGHUP');
    let refused = await proxy.waitForLog((l) => l.msg === 'new configuration refused; old configuration stays', 10_000, from);
    assert.match(JSON.stringify(refused['problems']), /unknown key 'bogusKey'/);

    from = proxy.logs.length;
    proxy.writeConfig(lifecycleRawConfig(world, 'greeting four', (c) => { c['tls'] = { certFile: `${world.dir}/missing.pem`, keyFile: world.tls.keyPath }; }));
    proxy.signal('SIGHUP');
    refused = await proxy.waitForLog((l) => l.msg === 'new configuration refused; old configuration stays', 10_000, from);
    assert.match(JSON.stringify(refused['problems']), /missing\.pem/);

    assert.match(await greetingOf(), /greeting two$/);
    await ok(loggedIn, 'NOOP');
    const r = await anon.command('n2', 'NOOP');
    assert.match(r, /^n2 OK/m, r);
    assert.equal(proxy.logs.filter((l) => l.msg === 'configuration reloaded').length, 1);
  });

  it('SIGHUP with listener changes: added listeners serve at once, a removed one stops accepting while its session carries on, a port in use refuses the whole reload', async () => {
    const [pop3Port, extraPort, busyPort] = await allocatePorts(3);
    const base = { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' };
    const extra = { protocol: 'imap', address: '127.0.0.1', port: extraPort, tls: 'none' };
    const pop3 = { protocol: 'pop3', address: '127.0.0.1', port: pop3Port, tls: 'none' };
    const reload = async (greeting: string, listeners: unknown[]) => {
      const from = proxy.logs.length;
      proxy.writeConfig(lifecycleRawConfig(world, greeting, (c) => { c['listeners'] = listeners; }));
      proxy.signal('SIGHUP');
      return proxy.waitForLog((l) => l.msg === 'configuration reloaded' || l.msg === 'reload failed; old configuration stays', 10_000, from);
    };
    const greet = async (p: number) => { const c = await LineClient.connect(p); const g = await c.readLine(); c.close(); return g; };

    assert.equal((await reload('greeting two', [base, extra, pop3])).msg, 'configuration reloaded');
    assert.match(await greet(pop3Port!), /^\+OK/);
    assert.match(await greet(extraPort!), /^\* OK .*greeting two$/);
    assert.match(await greet(port), /greeting two$/, 'the kept port-0 listener still serves');
    const onExtra: LoggedIn = { c: await LineClient.connect(extraPort!), n: 0 };
    await onExtra.c.readLine();
    await ok(onExtra, `LOGIN ${world.users.bob.uid} ${world.users.bob.password}`);

    assert.equal((await reload('greeting two', [base, pop3])).msg, 'configuration reloaded');
    assert.ok((await msUntilRefused(extraPort!, 2000)) < 2000, 'the removed listener refuses new connections');
    await ok(onExtra, 'SELECT INBOX');
    assert.match(await greet(pop3Port!), /^\+OK/);

    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(busyPort, '127.0.0.1', () => r()));
    try {
      const failed = await reload('greeting five', [base, pop3, { ...extra, port: busyPort }]);
      assert.equal(failed.msg, 'reload failed; old configuration stays');
      assert.match(String(failed['err']), new RegExp(`127\\.0\\.0\\.1:${busyPort}.*EADDRINUSE`));
      assert.match(await greet(port), /greeting two$/, 'nothing changed');
      assert.match(await greet(pop3Port!), /^\+OK/);
    } finally {
      blocker.close();
    }
    await ok(onExtra, 'NOOP');
    onExtra.c.close();
    await ok(loggedIn, 'NOOP');
  });

  it(`SIGTERM: new connections refused at once, /readyz 503, agent drain; sessions work until ${DRAIN_MS} ms, then BYE [UNAVAILABLE]; exit 0`, async () => {
    const t0 = Date.now();
    proxy.signal('SIGTERM');
    const refusedMs = await msUntilRefused(port, 1000);
    const ready = await adminGet(proxy.adminPort!, '/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.body, /draining/);
    assert.match(await agentSays(proxy.agentPort!), /^drain\b/);

    await new Promise((r) => setTimeout(r, 600));
    await ok(loggedIn, 'NOOP');
    await ok(loggedIn, 'SELECT INBOX');
    const workedAtMs = Date.now() - t0;

    const bye = await loggedIn.c.readUntil(/^\* BYE/, DRAIN_MS + 5000);
    const byeMs = Date.now() - t0;
    assert.match(bye, /^\* BYE \[UNAVAILABLE\]/m);
    const anonBye = await anon.readUntil(/^\* BYE/, 2000);
    assert.match(anonBye, /^\* BYE \[UNAVAILABLE\]/m);
    const exit = await proxy.exited;
    const exitMs = exit.at - t0;
    assert.equal(exit.code, 0);
    assert.ok(byeMs >= DRAIN_MS - 50, `goodbye came after ${byeMs} ms, before the ${DRAIN_MS} ms deadline`);
    assert.ok(byeMs < DRAIN_MS + 1000, `goodbye came only after ${byeMs} ms`);
    const stopped = proxy.logs.find((l) => l.msg === 'stopped');
    assert.equal(stopped?.['closedAtDeadline'], 2);
    console.log(`      drain: refused new connections after ${refusedMs} ms, session still worked at ${workedAtMs} ms, BYE at ${byeMs} ms, exit 0 at ${exitMs} ms (deadline ${DRAIN_MS} ms)`);
  });
});
