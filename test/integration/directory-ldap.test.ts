// Proves the LDAP directory against a real slapd: binds, escaping, failover, and outages (stopped and SIGSTOPped server).
// Must not involve the proxy's protocol dialogues or Dovecot; only src/directory talks to the world's slapd here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { Client, type ClientOptions } from 'ldapts';
import { CachedDirectory } from '../../src/directory/cached.js';
import { LdapDirectory, type LdapClient } from '../../src/directory/ldap.js';
import { isProxyError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { registry } from '../../src/metrics.js';
import { ldapSchemaDefaults } from '../unit/directory/ldap-fixtures.js';
import { startWorld, type World } from './harness/world.js';

const TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 500;

const creds = (user: string, password: string) => ({ user, password, mechanism: 'PLAIN' as const });
const unavailable = (e: unknown) => isProxyError(e) && e.code === 'DIRECTORY_UNAVAILABLE';

/** Real ldapts clients, with every bind counted (to prove what was, and was not, sent). */
function countingFactory() {
  const binds: string[] = [];
  const factory = (o: ClientOptions): LdapClient => {
    const c = new Client(o);
    const bind = c.bind.bind(c);
    c.bind = ((dn: string, pw?: string) => { binds.push(String(dn)); return bind(dn, pw); }) as Client['bind'];
    return c;
  };
  return { binds, factory };
}

async function elapsed<T>(p: Promise<T>): Promise<[PromiseSettledResult<T>, number]> {
  const t = Date.now();
  const [r] = await Promise.allSettled([p]);
  return [r!, Date.now() - t];
}

describe('LDAP directory against a real slapd', function () {
  this.timeout(60_000);
  let world: World;
  const open: LdapDirectory[] = [];

  function directory(urls?: string[], extra: Record<string, unknown> = {}) {
    const { binds, factory } = countingFactory();
    const config = ldapSchemaDefaults({
      urls: urls ?? [world.ldap.url], bindDN: world.ldap.bindDN, bindPassword: world.ldap.bindPassword, baseDN: world.ldap.baseDN,
      timeoutMs: TIMEOUT_MS, connectTimeoutMs: CONNECT_TIMEOUT_MS, ...extra,
    });
    const dir = new LdapDirectory(config, silentLogger, Date.now, factory);
    open.push(dir);
    // Probes (bind + base search) bring a failed server back; these tests call probeAll() where they need one at once.
    return { dir, binds };
  }

  before(async () => { world = await startWorld(); });
  after(async () => {
    await Promise.allSettled(open.map((d) => d.close()));
    await world?.stop();
  });

  it('alice authenticates with her password and is routed to backend-a', async () => {
    const { dir } = directory();
    const { alice } = world.users;
    const r = await dir.authenticate(creds(alice.uid, alice.password));
    assert.deepEqual(r, { ok: true, account: { login: 'alice', mail: alice.mail, host: 'backend-a', dn: alice.dn } });
    const byMail = await dir.authenticate(creds(alice.mail, alice.password));
    assert.ok(byMail.ok && byMail.account.login === 'alice');
  });

  it("erin's password with quotes, backslash, spaces and UTF-8 verifies", async () => {
    const { dir } = directory();
    assert.equal((await dir.authenticate(creds('erin', world.users.erin.password))).ok, true);
    assert.equal((await dir.authenticate(creds('erin', world.users.erin.password.normalize('NFD')))).ok, false);
  });

  it('wrong password and unknown user give { ok: false }', async () => {
    const { dir } = directory();
    assert.deepEqual(await dir.authenticate(creds('alice', 'not-her-password')), { ok: false });
    assert.deepEqual(await dir.authenticate(creds('bob', world.users.alice.password)), { ok: false });
    assert.deepEqual(await dir.authenticate(creds('nobody', 'x')), { ok: false });
  });

  it('an empty password is refused without any bind reaching slapd', async () => {
    const { dir, binds } = directory();
    const logBefore = readFileSync(world.ldap.logPath, 'utf8').length;
    assert.deepEqual(await dir.authenticate(creds('alice', '')), { ok: false });
    assert.deepEqual(await dir.authenticate(creds('', '')), { ok: false });
    assert.deepEqual(binds, []);
    await new Promise((r) => setTimeout(r, 100));
    assert.doesNotMatch(readFileSync(world.ldap.logPath, 'utf8').slice(logBefore), / BIND dn=/);
  });

  it('lookup by uid and by mail, lookupRecipient by address; carol has no host', async () => {
    const { dir } = directory();
    assert.equal((await dir.lookup('alice@example.test'))?.login, 'alice');
    assert.equal((await dir.lookup('bob'))?.host, 'backend-b');
    assert.deepEqual(await dir.lookup('carol'), { login: 'carol', mail: 'carol@example.test', host: null, dn: world.users.carol.dn });
    assert.equal((await dir.lookupRecipient('bob@example.test'))?.login, 'bob');
    assert.equal(await dir.lookupRecipient('nobody@example.test'), null);
    assert.equal(await dir.lookup('nobody'), null);
  });

  it('filter metacharacters are escaped and match nobody', async () => {
    const { dir, binds } = directory();
    const logBefore = readFileSync(world.ldap.logPath, 'utf8').length;
    for (const name of ['*', ')(uid=*', '\\', 'alice)(|(uid=*', '*)(objectClass=*', 'al*', 'josé']) {
      assert.deepEqual(await dir.authenticate(creds(name, world.users.alice.password)), { ok: false }, name);
      assert.equal(await dir.lookup(name), null, name);
      assert.equal(await dir.lookupRecipient(name), null, name);
    }
    assert.deepEqual(binds, [world.ldap.bindDN], 'only the service bind; no user matched');
    await new Promise((r) => setTimeout(r, 100));
    const log = readFileSync(world.ldap.logPath, 'utf8').slice(logBefore);
    assert.match(log, /\(uid=\\29\\28uid=\\2[Aa]\)/, 'slapd received the escaped value');
    assert.match(log, /\(uid=\\5[Cc]\)/);
    assert.match(log, /\(uid=jos\\[Cc]3\\[Aa]9\)/, 'non-ASCII arrives as its UTF-8 octets, not double-encoded');
  });

  it('uncached logins: one search and one bind each, on pooled connections (no connect or unbind per login)', async () => {
    const { dir } = directory(undefined, { pool: { size: 2, idleTimeoutMs: 60_000, onServerFailure: 'close-all' } });
    // Opens the connections: the service one and both bind ones. The pool opens a bind connection only when a bind
    // finds the others busy, so two logins at once may still have used one: log in until slapd saw binds on two.
    const logStart = readFileSync(world.ldap.logPath, 'utf8').length;
    const bindConns = () => new Set([...readFileSync(world.ldap.logPath, 'utf8').slice(logStart).matchAll(/conn=(\d+) op=\d+ BIND dn="uid=/g)].map((m) => m[1])).size;
    for (let warm = 0; warm < 20; warm++) {
      assert.ok((await Promise.all([dir.authenticate(creds('alice', world.users.alice.password)), dir.authenticate(creds('bob', world.users.bob.password))])).every((r) => r.ok));
      await new Promise((r) => setTimeout(r, 100)); // slapd writes its stats log asynchronously
      if (bindConns() >= 2) break;
    }
    assert.equal(bindConns(), 2, 'the warm-up filled the bind pool (size 2)');
    const logBefore = readFileSync(world.ldap.logPath, 'utf8').length;
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([dir.authenticate(creds('alice', world.users.alice.password)), dir.authenticate(creds('bob', world.users.bob.password))]);
      assert.ok(results.every((r) => r.ok));
    }
    await new Promise((r) => setTimeout(r, 200)); // slapd writes its stats log asynchronously
    const log = readFileSync(world.ldap.logPath, 'utf8').slice(logBefore);
    const count = (re: RegExp) => (log.match(re) ?? []).length;
    // The logins' operations ran on connections opened before the window (slapd's conn= numbers). Another connection
    // that slapd accepted meanwhile (a probe of this or an earlier test's directory) is not one of the logins'.
    const conns = (re: RegExp) => new Set([...log.matchAll(re)].map((m) => m[1]));
    const used = conns(/conn=(\d+) op=\d+ (?:SRCH base=|BIND dn="uid=)/g);
    const accepted = conns(/conn=(\d+) fd=\d+ ACCEPT from/g);
    const acceptedEver = [...readFileSync(world.ldap.logPath, 'utf8').matchAll(/conn=(\d+) fd=\d+ ACCEPT from/g)].length;
    assert.ok(acceptedEver >= 3, `slapd's ACCEPT lines are recognised (${acceptedEver} in its whole log)`);
    assert.ok(used.size > 0 && used.size <= 3, `the logins used ${used.size} connections (a service one and two bind ones at most)`);
    assert.deepEqual([...used].filter((c) => accepted.has(c)), [], 'no connection opened for a login');
    assert.equal(count(/ UNBIND/g), 0, 'no unbind');
    assert.equal(count(/ SRCH base=/g), 10, 'one search per login');
    assert.equal(count(/ BIND dn="uid=[^"]*" method=/g), 10, 'one user bind per login');
  });

  it('keeps one service connection for many requests', async () => {
    const { dir, binds } = directory();
    await Promise.all(Array.from({ length: 20 }, (_, i) => dir.lookup(i % 2 ? 'alice' : 'bob')));
    assert.deepEqual(binds, [world.ldap.bindDN]);
  });

  it('StartTLS on ldap:// with the CA file: binds and searches only after the upgrade (slapd logs the StartTLS operation)', async () => {
    const ca = readFileSync(world.tls.caPath, 'utf8');
    const logBefore = readFileSync(world.ldap.logPath, 'utf8').length;
    for (const url of [world.ldap.url, world.ldap.url.replace('127.0.0.1', 'localhost')]) {
      const { dir } = directory([url], { startTls: true, tlsCa: ca, tlsVerify: true });
      const r = await dir.authenticate(creds('alice', world.users.alice.password));
      assert.ok(r.ok && r.account.host === 'backend-a', `${url}: ${JSON.stringify(r)}`);
      await dir.close();
    }
    const log = readFileSync(world.ldap.logPath, 'utf8').slice(logBefore);
    // Every connection of this test (service + user bind, twice) starts with the StartTLS extended operation.
    const conns = new Set([...log.matchAll(/conn=(\d+) op=\d+ BIND dn=/g)].map((m) => m[1]));
    assert.ok(conns.size >= 4, log);
    for (const conn of conns) assert.match(log, new RegExp(`conn=${conn} op=0 EXT oid=1\\.3\\.6\\.1\\.4\\.1\\.1466\\.20037`), `conn ${conn} did not start with StartTLS`);
  });

  it('StartTLS against a certificate the CA does not sign: unavailable, and no bind is sent at all', async () => {
    const { dir, binds } = directory([world.ldap.url], { startTls: true, tlsVerify: true });
    const logBefore = readFileSync(world.ldap.logPath, 'utf8').length;
    await assert.rejects(dir.authenticate(creds('alice', world.users.alice.password)), unavailable);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(binds, []);
    assert.doesNotMatch(readFileSync(world.ldap.logPath, 'utf8').slice(logBefore), / BIND dn=/);
  });

  it('ldaps:// with the CA file verifies the server and authenticates; without it the self-signed server is refused', async () => {
    const ca = readFileSync(world.tls.caPath, 'utf8');
    const ok = directory([world.ldap.ldapsUrl], { tlsCa: ca, tlsVerify: true }).dir;
    assert.equal((await ok.authenticate(creds('bob', world.users.bob.password))).ok, true);
    const refused = directory([world.ldap.ldapsUrl], { tlsVerify: true }).dir;
    await assert.rejects(refused.lookup('bob'), unavailable);
  });

  it('fails over from a dead URL to the real one, and reports ldap_up per server', async () => {
    const deadUrl = `ldap://127.0.0.1:${world.deadPort}`;
    const { dir } = directory([deadUrl, world.ldap.url]);
    const { alice } = world.users;
    assert.equal((await dir.authenticate(creds('alice', alice.password))).ok, true);
    const [r, ms] = await elapsed(dir.lookup('bob'));
    assert.equal(r.status === 'fulfilled' && r.value?.host, 'backend-b');
    assert.ok(ms < 200, `dead server skipped while it cools down (${ms} ms)`);
    const up = await registry.getSingleMetricAsString('mailproxy_ldap_up');
    assert.ok(up.includes(`server="${deadUrl}"} 0`), up);
    assert.ok(up.includes(`server="${world.ldap.url}"} 1`), up);
  });

  it('a blackholed first server (accepts TCP, never answers) costs one hedge delay, then is skipped until a probe succeeds', async () => {
    const sockets: import('node:net').Socket[] = [];
    const hole = createServer((s) => { sockets.push(s); s.on('error', () => undefined); });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    const holeUrl = `ldap://127.0.0.1:${(hole.address() as AddressInfo).port}`;
    try {
      const { dir } = directory([holeUrl, world.ldap.url], { hedgeDelayMs: 150 });
      const { alice } = world.users;
      const [first, firstMs] = await elapsed(dir.authenticate(creds('alice', alice.password)));
      assert.equal(first.status === 'fulfilled' && first.value.ok, true);
      assert.ok(firstMs >= 140 && firstMs < TIMEOUT_MS, `first request hedged to the second server (${firstMs} ms)`);
      await new Promise((r) => setTimeout(r, TIMEOUT_MS + 100)); // the blackholed attempt times out: marked down
      assert.ok((await registry.getSingleMetricAsString('mailproxy_ldap_up')).includes(`server="${holeUrl}"} 0`));
      const [second, secondMs] = await elapsed(dir.lookup('bob'));
      assert.equal(second.status === 'fulfilled' && second.value?.host, 'backend-b');
      assert.ok(secondMs < 100, `blackholed server skipped afterwards (${secondMs} ms)`);
      await dir.probeAll(); // still silent: stays down
      const [third, thirdMs] = await elapsed(dir.lookup('alice'));
      assert.equal(third.status === 'fulfilled' && third.value?.host, 'backend-a');
      assert.ok(thirdMs < 100, `${thirdMs} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => hole.close(r));
    }
  });

  it('slapd stopped: DIRECTORY_UNAVAILABLE (not ok:false) within the timeout; back when it restarts', async () => {
    const { dir } = directory();
    const inner = directory().dir;
    const cached = new CachedDirectory(inner, { enabled: true, maxEntries: 100, ttlMs: 0, negativeTtlMs: 0, maxStaleMs: 60_000 });
    assert.equal((await dir.authenticate(creds('alice', world.users.alice.password))).ok, true);
    assert.equal((await cached.lookup('alice'))?.host, 'backend-a');
    await world.ldap.stop();
    try {
      const [r, ms] = await elapsed(dir.authenticate(creds('alice', world.users.alice.password)));
      assert.ok(r.status === 'rejected' && unavailable(r.reason), JSON.stringify(r));
      assert.ok(ms < TIMEOUT_MS + CONNECT_TIMEOUT_MS, `${ms} ms`);
      await assert.rejects(dir.lookup('alice'), unavailable);
      await assert.rejects(dir.authenticate(creds('alice', 'wrong')), unavailable);
      assert.equal((await cached.lookup('alice'))?.host, 'backend-a', 'cache serves the last good route');
      await assert.rejects(cached.lookup('bob'), unavailable);
    } finally {
      await world.ldap.start();
    }
    await dir.probeAll();
    // The kept service connection was closed by the server: a new one connects and binds again.
    assert.equal((await dir.authenticate(creds('alice', world.users.alice.password))).ok, true);
    assert.equal((await dir.lookup('bob'))?.host, 'backend-b');
  });

  it('slapd restarted between requests: the kept connection re-binds instead of searching anonymously', async () => {
    const { dir, binds } = directory();
    assert.equal((await dir.lookup('alice'))?.host, 'backend-a');
    await world.ldap.stop();
    await world.ldap.start();
    // Anonymous may only bind (ACL), so an unbound search would find nobody and wrongly answer null.
    assert.equal((await dir.lookup('alice'))?.host, 'backend-a');
    assert.equal((await dir.authenticate(creds('alice', world.users.alice.password))).ok, true);
    assert.deepEqual(binds.filter((b) => b === world.ldap.bindDN).length, 2, 'first bind, then its replay on the reconnected socket');
  });

  it('slapd paused (SIGSTOP): DIRECTORY_UNAVAILABLE within timeoutMs + margin, then works after resume', async () => {
    const { dir } = directory();
    assert.equal((await dir.lookup('alice'))?.host, 'backend-a');
    world.ldap.pause();
    try {
      const [r, ms] = await elapsed(dir.authenticate(creds('alice', world.users.alice.password)));
      assert.ok(r.status === 'rejected' && unavailable(r.reason), JSON.stringify(r));
      assert.ok(ms >= TIMEOUT_MS - 50 && ms < TIMEOUT_MS + 300, `${ms} ms`);
      // A new connection to a stopped process connects (kernel backlog) but its bind gets no answer.
      const [r2, ms2] = await elapsed(dir.lookup('bob'));
      assert.ok(r2.status === 'rejected' && unavailable(r2.reason), JSON.stringify(r2));
      assert.ok(ms2 < TIMEOUT_MS + CONNECT_TIMEOUT_MS + 300, `${ms2} ms`);
      // The server timed out: every request skips it at once until a probe succeeds.
      const burst = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((u) => elapsed(dir.lookup(u))));
      assert.ok(burst.every(([r]) => r.status === 'rejected' && unavailable(r.reason)));
      const times = burst.map(([, ms]) => ms);
      assert.ok(times.every((ms) => ms < 100), `${times.join(', ')} ms`);
    } finally {
      world.ldap.resume();
    }
    await dir.probeAll();
    assert.equal((await dir.authenticate(creds('alice', world.users.alice.password))).ok, true);
  });
});
