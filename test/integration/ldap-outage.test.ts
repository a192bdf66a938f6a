// Proves LDAP trouble as IMAP clients see it through the proxy: a blackholed or SIGSTOPped server, all servers hung
// (cached users keep logging in), and mailproxy_ldap_up following a dead server by probes alone. Real slapd (two), real Dovecot.
// Must not test the directory's internals (directory-ldap and unit tests do).
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { requireBinaries } from './harness/binaries.js';
import { startLdap, type LdapInstance } from './harness/ldap-server.js';
import { allocatePorts } from './harness/ports.js';
import { startWorld, type World } from './harness/world.js';
import { describeSummary, imapLogin, loginStream, summarize } from './login-stream.js';
import { startProxy, worldConfig, type RunningProxy } from './proxy-fixture.js';
import { registry } from '../../src/metrics.js';

/** What the issue demands of LDAP trouble: p99 of uncached logins, and the temporary error when every server is hung. */
const BOUND_MS = 1500;
const PROBE_INTERVAL_MS = 1000;

async function ldapUp(url: string): Promise<number | undefined> {
  const text = await registry.getSingleMetricAsString('mailproxy_ldap_up');
  const m = new RegExp(`server="${url.replace(/[/.]/g, '\\$&')}"} (\\d)`).exec(text);
  return m ? Number(m[1]) : undefined;
}

async function waitUp(url: string, want: number, withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < withinMs) {
    if ((await ldapUp(url)) === want) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`ldap_up{${url}} not ${want} within ${withinMs} ms (is ${await ldapUp(url)})`);
}

describe('LDAP outages as clients see them (real slapd ×2, real Dovecot)', function () {
  this.timeout(90_000);
  let world: World;
  let ldap2: LdapInstance;
  let hole: Server;
  let holeUrl: string;
  const held: Socket[] = [];
  const proxies: RunningProxy[] = [];

  /** A proxy with the directory cache off (every login asks LDAP) unless `cache` is set; LDAP defaults otherwise. */
  async function proxyFor(urls: string[], cache = false): Promise<RunningProxy> {
    const p = await startProxy(worldConfig(world, (raw) => {
      const dir = raw['directory'] as Record<string, Record<string, unknown>>;
      dir['ldap'] = { ...dir['ldap'], urls, timeoutMs: 1000, connectTimeoutMs: 1000, probeIntervalMs: PROBE_INTERVAL_MS };
      dir['cache'] = cache ? { enabled: true, ttlMs: 1000, negativeTtlMs: 0 } : { enabled: false };
      raw['log'] = { level: 'warn' };
    }));
    proxies.push(p);
    return p;
  }
  const users = () => [{ user: 'alice', password: world.users.alice.password }, { user: 'bob', password: world.users.bob.password }];

  before(async () => {
    // Long-lived Dovecot processes: on a loaded 2-core machine a fork per login would dominate the times measured here.
    world = await startWorld({ dovecotPerfTuning: true });
    const [port, ldapsPort] = await allocatePorts(2);
    const bins = requireBinaries();
    ldap2 = await startLdap({ dir: join(world.dir, 'ldap2'), port: port!, ldapsPort: ldapsPort!, certPath: world.tls.certPath, keyPath: world.tls.keyPath, users: Object.values(world.users), slapd: bins.get('slapd')!, slapadd: bins.get('slapadd')! });
    // Accepts TCP and never answers: a blackholed LDAP server.
    hole = createServer((s) => { held.push(s); s.on('error', () => undefined); });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    holeUrl = `ldap://127.0.0.1:${(hole.address() as AddressInfo).port}`;
  });
  after(async () => {
    await Promise.allSettled(proxies.map((p) => p.stop()));
    ldap2?.resume();
    for (const s of held) s.destroy();
    await new Promise((r) => hole?.close(r));
    await ldap2?.stop();
    await world?.stop();
  });

  it('baseline (both servers answer, cache off): the same stream, for comparison', async () => {
    const p = await proxyFor([ldap2.url, world.ldap.url]);
    const s = summarize(await loginStream({ port: p.port('imap', 'starttls'), users: users(), perSecond: 10, durationMs: 2000 }));
    console.log(`      baseline: ${describeSummary(s)}`);
    assert.equal(s.errors, 0);
  });

  it('one server blackholed (cache off): every login succeeds, p99 within 1.5 s', async () => {
    const p = await proxyFor([holeUrl, world.ldap.url]);
    const results = await loginStream({ port: p.port('imap', 'starttls'), users: users(), perSecond: 10, durationMs: 3000 });
    const s = summarize(results);
    console.log(`      blackhole: ${describeSummary(s)}`);
    assert.equal(s.errors, 0, JSON.stringify(results.filter((r) => r.cls !== 'ok').slice(0, 3)));
    assert.ok(s.p99 <= BOUND_MS, `p99 ${s.p99} ms`);
  });

  it('one server SIGSTOPped under a login stream (cache off): every login succeeds, p99 within 1.5 s', async () => {
    const p = await proxyFor([ldap2.url, world.ldap.url]);
    try {
      const results = await loginStream({ port: p.port('imap', 'starttls'), users: users(), perSecond: 10, durationMs: 4000, at: [{ afterMs: 1000, run: () => ldap2.pause() }] });
      const s = summarize(results);
      console.log(`      SIGSTOP of one: ${describeSummary(s)}`);
      assert.equal(s.errors, 0, JSON.stringify(results.filter((r) => r.cls !== 'ok').slice(0, 3)));
      assert.ok(s.p99 <= BOUND_MS, `p99 ${s.p99} ms`);
    } finally {
      ldap2.resume();
    }
  });

  it('all servers hung: uncached users get the temporary error within 1.5 s, cached users keep logging in', async () => {
    const p = await proxyFor([ldap2.url, holeUrl], true);
    const port = p.port('imap', 'starttls');
    assert.equal((await imapLogin(port, 'alice', world.users.alice.password)).cls, 'ok', 'alice logs in once: her verdict is cached');
    ldap2.pause();
    try {
      const results = await loginStream({ port, users: [{ user: 'bob', password: world.users.bob.password }, { user: 'alice', password: world.users.alice.password }], perSecond: 10, durationMs: 3000 });
      const bob = summarize(results.filter((r) => r.user === 'bob'), 'unavailable');
      const alice = summarize(results.filter((r) => r.user === 'alice'), 'ok');
      console.log(`      all hung, uncached: ${describeSummary(bob)}`);
      console.log(`      all hung, cached: ${describeSummary(alice)}`);
      assert.equal(bob.errors, 0, 'every uncached login gets NO [UNAVAILABLE]');
      assert.ok(bob.max <= BOUND_MS, `slowest temporary error ${bob.max} ms`);
      assert.equal(alice.errors, 0, 'cached users keep logging in');
      const late = results.filter((r) => r.user === 'bob').slice(-5).map((r) => Math.round(r.ms));
      assert.ok(late.every((ms) => ms < 200), `no per-login wait once both are known down: ${late.join(', ')} ms`);
    } finally {
      ldap2.resume();
    }
  });

  it('a SIGHUP reload during an outage keeps the cache: cached users go on logging in (a reload used to empty it)', async () => {
    const p = await proxyFor([ldap2.url], true);
    const port = p.port('imap', 'starttls');
    assert.equal((await imapLogin(port, 'alice', world.users.alice.password)).cls, 'ok', 'alice logs in once: her verdict is cached');
    ldap2.pause();
    try {
      await waitUp(ldap2.url, 0, PROBE_INTERVAL_MS * 5);
      assert.equal((await imapLogin(port, 'alice', world.users.alice.password)).cls, 'ok', 'served from the cache');
      // What `kill -HUP` does with an unchanged file (a certificate rotation, a listener added): a freshly read config.
      await p.app.reload(structuredClone(p.config));
      const alice = await imapLogin(port, 'alice', world.users.alice.password);
      assert.equal(alice.cls, 'ok', 'still served from the cache after the reload');
      assert.ok(alice.ms < 1000, `no LDAP wait after the reload either (${Math.round(alice.ms)} ms): the server stays known down`);
      assert.equal((await imapLogin(port, 'bob', world.users.bob.password)).cls, 'unavailable', 'an uncached user still gets the temporary error');
    } finally {
      ldap2.resume();
    }
  });

  it('mailproxy_ldap_up follows a dead server within one probe interval, even when the cache hides it; back when it returns', async () => {
    const p = await proxyFor([ldap2.url, world.ldap.url], true);
    await waitUp(ldap2.url, 1, 3000);
    assert.equal((await imapLogin(p.port('imap', 'starttls'), 'alice', world.users.alice.password)).cls, 'ok');
    await ldap2.stop();
    try {
      const downMs = await waitUp(ldap2.url, 0, PROBE_INTERVAL_MS * 3);
      console.log(`      ldap_up 0 after ${downMs} ms (probe interval ${PROBE_INTERVAL_MS} ms)`);
      assert.ok(downMs <= PROBE_INTERVAL_MS * 1.1 + 200, `${downMs} ms`);
    } finally {
      await ldap2.start();
    }
    const upMs = await waitUp(ldap2.url, 1, 3000);
    console.log(`      ldap_up 1 again ${upMs} ms after slapd listened`);
  });
});
