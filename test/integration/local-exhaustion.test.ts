// Proves that a proxy out of file descriptors (a flood of idle client connections up to its RLIMIT_NOFILE) does not
// blame its backends or its LDAP server: probes that cannot open a socket leave their state alone (no "down", no hooks), and
// logins work again as soon as the flood is gone. Real Dovecot and slapd; the proxy runs as a child under `ulimit -n`.
// Must not test the state machine itself (unit tests do).
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startWorld, type World } from './harness/world.js';
import { startChildProxy, type ChildProxy } from './child-proxy.js';
import { worldRawConfig } from './proxy-fixture.js';
import { imapLogin } from './login-stream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens a connection and resolves once it is connected or has failed (the proxy may accept and close it at once). */
function openIdle(port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s));
  });
}

describe('proxy out of file descriptors (real Dovecot and slapd, child proxy under ulimit -n)', function () {
  this.timeout(90_000);
  let world: World;
  let proxy: ChildProxy | undefined;
  const flood: Socket[] = [];

  before(async () => { world = await startWorld(); });
  after(async () => {
    for (const s of flood) s.destroy();
    await proxy?.stop();
    await world?.stop();
  });

  it('keeps its backends up while it cannot open sockets, and logs in again once the flood is gone', async () => {
    const raw = worldRawConfig(world, (r) => {
      r['log'] = { level: 'info' };
      r['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
      delete (r['backends'] as Record<string, unknown>)['backend-dead'];
      r['health'] = { enabled: true, intervalMs: 200, fastIntervalMs: 100, timeoutMs: 2000, rise: 2, fall: 2 };
      (r['directory'] as { cache: unknown })['cache'] = { ttlMs: 120_000 };
      // LDAP probed often enough that some of its probes fall into the flood.
      ((r['directory'] as { ldap: Record<string, unknown> })['ldap'])['probeIntervalMs'] = 400;
    });
    // The shell execs node under the limit, so the pid (signals, stop) stays the proxy's.
    proxy = await startChildProxy(world, raw, { name: 'fd-limit', wrap: ['/bin/sh', '-c', 'ulimit -n 256 && exec "$0" "$@"'] });
    const port = proxy.port('imap', 'none');
    const upLogged = (backend: string) => proxy!.waitForLog((l) => l['event'] === 'backend_state' && l['backend'] === backend && l['to'] === 'up', 30_000);
    await Promise.all([upLogged('backend-a'), upLogged('backend-b')]);
    // alice's credentials in the cache: the LDAP probe fails too while descriptors are out.
    assert.equal((await imapLogin(port, 'alice', world.users.alice.password)).cls, 'ok');
    const from = proxy.logs.length;

    for (let i = 0; i < 320; i++) flood.push(await openIdle(port));
    // Well over fall × interval: without the fix both backends are marked down (probes fail with EMFILE) within 1 s.
    await sleep(2500);
    const during = proxy.logs.slice(from);
    assert.ok(during.some((l) => /EMFILE/.test(JSON.stringify(l))), 'the flood exhausted the proxy\'s descriptors (an EMFILE was logged)');
    // On a loaded machine a slow greeting may fail a probe for real; none may fail for want of a socket.
    const down = during.filter((l) => (l['event'] === 'backend_state' || l['event'] === 'backend_endpoint_state') && /EMFILE|ENFILE/.test(String(l['reason'])));
    assert.deepEqual(down.map((l) => `${String(l['backend'])} ${String(l['protocol'] ?? '')} -> ${String(l['to'])}: ${String(l['reason'])}`), []);
    assert.ok(during.some((l) => l['event'] === 'probe_skipped_local'), 'probes that could not open a socket were logged as skipped');
    // The directory likewise: an LDAP probe that cannot open its socket marks no server down (nor closes its pool).
    const ldapDown = during.filter((l) => l['msg'] === 'LDAP server failed: skipped until a probe succeeds' && /EMFILE|ENFILE/.test(String(l['reason'])));
    assert.deepEqual(ldapDown.map((l) => String(l['reason'])), []);
    assert.ok(during.some((l) => l['event'] === 'ldap_probe_skipped_local'), 'LDAP probes that could not open a socket were logged as skipped');

    for (const s of flood.splice(0)) s.destroy();
    // The proxy closes its ends as it reads the FINs; then logins work (a loaded machine may take a moment).
    let after = await imapLogin(port, 'alice', world.users.alice.password, 5000);
    for (let i = 0; i < 20 && after.cls !== 'ok'; i++) { await sleep(250); after = await imapLogin(port, 'alice', world.users.alice.password, 5000); }
    assert.equal(after.cls, 'ok', after.answer);
  });
});
