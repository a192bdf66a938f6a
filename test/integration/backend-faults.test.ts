// Proves backend faults as IMAP clients see them through the proxy, with real Dovecot and default health settings:
// a hung backend (SIGSTOP) and two nodes answering in turn behind one address (split brain).
// Must not test the state machine's details (unit tests do).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startForwarder, type Forwarder } from './harness/alternating-forwarder.js';
import { startWorld, type World } from './harness/world.js';
import { describeSummary, imapLogin, loginStream, summarize } from './login-stream.js';
import { startProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import type { RouteProtocol } from '../../src/directory/backends.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean, withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < withinMs) {
    if (check()) return Date.now() - t0;
    await sleep(20);
  }
  throw new Error(`${what}: not within ${withinMs} ms`);
}

describe('backend faults as clients see them (real Dovecot, default health settings)', function () {
  this.timeout(120_000);
  let world: World;
  const proxies: RunningProxy[] = [];
  const forwarders: Forwarder[] = [];

  /** A proxy in front of the world with health on and its defaults (only what the test names is changed). */
  async function proxyWith(mutate: (raw: RawConfig) => void = () => undefined): Promise<RunningProxy> {
    const p = await startProxy(worldConfig(world, (raw) => {
      raw['health'] = { enabled: true };
      raw['backendLogin'] = {};
      raw['log'] = { level: 'warn' };
      mutate(raw);
    }));
    proxies.push(p);
    return p;
  }
  const state = (p: RunningProxy, backend: string, protocol: RouteProtocol = 'imap') => p.app.monitor.stateOf(backend, protocol);
  const endpoint = (p: RunningProxy, backend: string) => p.app.monitor.snapshot().find((b) => b.backend === backend)?.endpoints.find((e) => e.protocol === 'imap');
  const alice = () => ({ user: 'alice', password: world.users.alice.password });
  const bob = () => ({ user: 'bob', password: world.users.bob.password });

  before(async () => { world = await startWorld({ dovecotPerfTuning: true }); });
  after(async () => {
    world?.backends.a.resume();
    world?.backends.b.resume();
    await Promise.allSettled(proxies.map((p) => p.stop()));
    await Promise.allSettled(forwarders.map((f) => f.close()));
    await world?.stop();
  });

  it('SIGSTOP of a backend: marked down within 3 s with the default health settings', async () => {
    const p = await proxyWith();
    await waitFor('backend-b up', () => state(p, 'backend-b') === 'up', 5000);
    assert.equal((await imapLogin(p.port('imap', 'starttls'), bob().user, bob().password)).cls, 'ok');
    world.backends.b.pause();
    try {
      const detectMs = await waitFor('backend-b down', () => state(p, 'backend-b') === 'down', 6000);
      console.log(`      SIGSTOP detected down after ${detectMs} ms`);
      assert.ok(detectMs <= 3000, `${detectMs} ms`);
      const r = await imapLogin(p.port('imap', 'starttls'), bob().user, bob().password);
      assert.equal(r.cls, 'unavailable');
      assert.ok(r.ms < 250, `once down, logins fail fast (${Math.round(r.ms)} ms)`);
    } finally {
      world.backends.b.resume();
    }
    const upMs = await waitFor('backend-b up again', () => state(p, 'backend-b') === 'up', 3000);
    console.log(`      resumed: up again after ${upMs} ms`);
    assert.ok(upMs <= 1000, `used again within 1 s (${upMs} ms)`);
  });

  it('two Dovecots answering in turn behind one address: split brain within 10 s; alert lets logins go on, refuse gives the temporary error until one identity is stable', async () => {
    const fwd = await startForwarder([world.backends.a.ports.imap, world.backends.b.ports.imap]);
    forwarders.push(fwd);
    const hookFile = join(mkdtempSync(join(tmpdir(), 'mp-sb-')), 'events');
    const behindForwarder = (policy: 'alert' | 'refuse') => (raw: RawConfig) => {
      const backends = raw['backends'] as Record<string, Record<string, Record<string, unknown>>>;
      backends['backend-a']!['imap'] = { port: fwd.port, tls: 'none' };
      raw['health'] = { enabled: true, splitBrain: { policy, stableMs: 2000 }, hooks: { command: `echo "$MAILPROXY_BACKEND $MAILPROXY_PROTOCOL $MAILPROXY_NEW_STATE" >> ${hookFile}` } };
    };
    const t0 = Date.now();
    const alert = await proxyWith(behindForwarder('alert'));
    const refuse = await proxyWith(behindForwarder('refuse'));
    // Logins keep arriving meanwhile, as they would: their greetings count as well as the probes'.
    const stream = loginStream({ port: alert.port('imap', 'starttls'), users: [alice()], perSecond: 4, durationMs: 2000 });
    await waitFor('split brain seen by both proxies', () => endpoint(alert, 'backend-a')?.splitBrain === true && endpoint(refuse, 'backend-a')?.splitBrain === true, 10_000);
    const detectMs = Date.now() - t0;
    console.log(`      split brain detected ${detectMs} ms after the proxies started (forwarded ${fwd.counts.join('/')})`);
    await stream;
    const alerted = summarize(await loginStream({ port: alert.port('imap', 'starttls'), users: [alice()], perSecond: 5, durationMs: 1000 }));
    const refused = summarize(await loginStream({ port: refuse.port('imap', 'starttls'), users: [alice()], perSecond: 5, durationMs: 1000 }), 'unavailable');
    console.log(`      policy alert: ${describeSummary(alerted)}`);
    console.log(`      policy refuse: ${describeSummary(refused)}`);
    assert.equal(alerted.errors, 0, 'alert: logins go on');
    assert.equal(refused.errors, 0, 'refuse: every login gets NO [UNAVAILABLE]');
    assert.ok(refused.max < 250, `refusals are fast (${refused.max} ms)`);
    await waitFor('hook ran', () => existsSync(hookFile) && /backend-a imap split_brain/.test(readFileSync(hookFile, 'utf8')), 3000);
    // Fencing done: only node A answers. After stableMs of one identity, logins are accepted again.
    fwd.mode = 0;
    const clearedMs = await waitFor('split brain over', () => endpoint(refuse, 'backend-a')?.splitBrain !== true, 6000);
    console.log(`      one identity again: split brain cleared after ${clearedMs} ms (stableMs 2000)`);
    assert.equal((await imapLogin(refuse.port('imap', 'starttls'), alice().user, alice().password)).cls, 'ok');
  });
});
