// Proves LdapDirectory's logic with a fake ldapts client: binds, ambiguity, name limits, failover and failback, error mapping.
// Must not need a real slapd (directory-ldap integration tests do).
import assert from 'node:assert/strict';
import { InvalidCredentialsError, InsufficientAccessError, type ClientOptions, type Filter, type SearchOptions } from 'ldapts';
import { ldapSchemaDefaults } from './ldap-fixtures.js';
import { LdapDirectory, type LdapClient } from '../../../src/directory/ldap.js';
import { isProxyError } from '../../../src/errors.js';
import { Writable } from 'node:stream';
import { createLogger, silentLogger } from '../../../src/log.js';
import { registry } from '../../../src/metrics.js';

interface FakeUser { dn: string; uid: string; mail: string; mailHost?: string; password: string }
/**
 * 'slow': each request fails with a timeout after SLOW_MS. 'hang': accepts and never answers (until the connection is
 * closed). 'emfile': this host is out of descriptors: a new connection fails with EMFILE, open ones still serve.
 */
type Mode = 'up' | 'refused' | 'timeout' | 'denied' | 'slow' | 'hang' | 'emfile';
const SLOW_MS = 150;

/** One fake LDAP server: evaluates filters with ldapts' own matcher over a few users, counts what it was asked. */
class FakeServer {
  mode: Mode = 'up';
  users: FakeUser[] = [];
  serviceBinds = 0;
  userBinds: string[] = [];
  searches: string[] = [];
  clientsCreated = 0;
  closed = 0;
  /** What each client did, in order ('starttls', 'bind', 'search'): proves StartTLS comes before any bind or search. */
  events: string[][] = [];
  /** StartTLS never completes (a server that stalls in the handshake). */
  stallStartTls = false;
  startTlsOptions: Array<Record<string, unknown>> = [];
  constructor(readonly url: string) {}
  fail(): Error {
    if (this.mode === 'refused') return Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    if (this.mode === 'denied') return new InsufficientAccessError();
    return new Error('SearchRequest: Operation timed out');
  }
}

const SERVICE_DN = 'cn=svc,dc=example,dc=test';

function fakeFactory(servers: FakeServer[]) {
  const options: ClientOptions[] = [];
  const clients: Array<LdapClient & { drop(): void }> = [];
  const factory = (o: ClientOptions): LdapClient => {
    options.push(o);
    const client = makeClient(o);
    clients.push(client);
    return client;
  };
  const makeClient = (o: ClientOptions): LdapClient & { drop(): void } => {
    const server = servers.find((s) => s.url === o.url)!;
    server.clientsCreated++;
    const events: string[] = [];
    server.events.push(events);
    let connected = false;
    const closers: Array<() => void> = [];
    const hang = () => new Promise<never>((_, reject) => closers.push(() => reject(new Error('Connection closed before message response was received'))));
    return {
      get isConnected() { return connected; },
      /** Test hook: the server closed this connection. */
      drop() { connected = false; },
      async startTLS(tlsOptions: Record<string, unknown>) {
        events.push('starttls');
        server.startTlsOptions.push(tlsOptions);
        if (server.stallStartTls) return new Promise(() => undefined);
        connected = true;
      },
      async bind(dn: unknown, password?: string) {
        events.push('bind');
        if (server.mode === 'hang') await hang();
        if (server.mode === 'slow') await new Promise((r) => setTimeout(r, SLOW_MS));
        if (server.mode === 'emfile' && !connected) throw Object.assign(new Error('connect EMFILE'), { code: 'EMFILE' });
        if (server.mode !== 'up' && server.mode !== 'emfile') throw server.fail();
        connected = true;
        if (dn === SERVICE_DN) {
          server.serviceBinds++;
          if (password !== 'svc-pw') throw new InvalidCredentialsError();
          return;
        }
        server.userBinds.push(String(dn));
        const u = server.users.find((x) => x.dn === dn);
        if (!u || u.password !== password) throw new InvalidCredentialsError();
      },
      async search(_base: unknown, opts: SearchOptions = {}) {
        events.push('search');
        if (server.mode === 'hang') await hang();
        if (server.mode === 'slow') await new Promise((r) => setTimeout(r, SLOW_MS));
        if (server.mode === 'emfile' && !connected) throw Object.assign(new Error('connect EMFILE'), { code: 'EMFILE' });
        if (server.mode !== 'up' && server.mode !== 'emfile') throw server.fail();
        connected = true;
        if (typeof opts.filter === 'string') return { searchEntries: [], searchReferences: [] }; // the probe's base search
        const filter = opts.filter as Filter;
        server.searches.push(filter.toString());
        const hits = server.users.filter((u) => filter.matches({ uid: u.uid, mail: u.mail }));
        const limited = hits.slice(0, opts.sizeLimit || hits.length);
        return {
          searchEntries: limited.map((u) => ({ dn: u.dn, uid: u.uid, mail: u.mail, mailHost: u.mailHost ?? [] })),
          searchReferences: [],
        };
      },
      async unbind() { connected = false; server.closed++; for (const c of closers.splice(0)) c(); },
    } as unknown as LdapClient & { drop(): void };
  };
  return { factory, options, clients };
}

const alice: FakeUser = { dn: 'uid=alice,ou=people,dc=example,dc=test', uid: 'alice', mail: 'alice@example.test', mailHost: 'backend-a', password: 'alice-pw' };
const carol: FakeUser = { dn: 'uid=carol,ou=people,dc=example,dc=test', uid: 'carol', mail: 'carol@example.test', password: 'carol-pw' };

function setup(urls = ['ldap://one:389'], overrides: Record<string, unknown> = {}) {
  let now = 1_000_000;
  const servers = urls.map((u) => new FakeServer(u));
  for (const s of servers) s.users = [alice, carol];
  const { factory, options, clients } = fakeFactory(servers);
  const config = ldapSchemaDefaults({ urls, bindDN: SERVICE_DN, bindPassword: 'svc-pw', filter: '(|(uid=%u)(mail=%u))', recipientFilter: '(mail=%u)', ...overrides });
  const dir = new LdapDirectory(config, silentLogger, () => now, factory);
  return { dir, servers, options, clients, advance: (ms: number) => { now += ms; } };
}

async function rejectsUnavailable(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: unknown) => isProxyError(e) && e.code === 'DIRECTORY_UNAVAILABLE');
}

const creds = (user: string, password: string) => ({ user, password, mechanism: 'PLAIN' as const });

describe('LdapDirectory (fake ldapts client)', () => {
  it('authenticates: search as the service account, bind as the found DN', async () => {
    const { dir, servers } = setup();
    const r = await dir.authenticate(creds('alice', 'alice-pw'));
    assert.deepEqual(r, { ok: true, account: { login: 'alice', mail: 'alice@example.test', host: 'backend-a', dn: alice.dn } });
    assert.deepEqual(servers[0]!.userBinds, [alice.dn]);
    assert.equal(servers[0]!.serviceBinds, 1);
  });

  it('accepts a mail address as login name; login is the uid', async () => {
    const { dir } = setup();
    const r = await dir.authenticate(creds('alice@example.test', 'alice-pw'));
    assert.ok(r.ok && r.account.login === 'alice');
  });

  it('wrong password and unknown user give { ok: false }', async () => {
    const { dir, servers } = setup();
    assert.deepEqual(await dir.authenticate(creds('alice', 'nope')), { ok: false });
    assert.deepEqual(await dir.authenticate(creds('mallory', 'x')), { ok: false });
    assert.deepEqual(servers[0]!.userBinds, [alice.dn]);
  });

  it('refuses an empty password before any search or bind', async () => {
    const { dir, servers } = setup();
    assert.deepEqual(await dir.authenticate(creds('alice', '')), { ok: false });
    assert.equal(servers[0]!.searches.length, 0);
    assert.equal(servers[0]!.userBinds.length + servers[0]!.serviceBinds, 0);
  });

  it('refuses names over 256 bytes or with control characters without asking the server', async () => {
    const { dir, servers } = setup();
    for (const name of ['a'.repeat(257), 'é'.repeat(129), 'ali\0ce', 'alice\r\n', '']) {
      assert.deepEqual(await dir.authenticate(creds(name, 'alice-pw')), { ok: false });
      assert.equal(await dir.lookup(name), null);
      assert.equal(await dir.lookupRecipient(name), null);
    }
    assert.equal(servers[0]!.searches.length, 0);
    assert.ok(await dir.lookup('a'.repeat(256)) === null);
    assert.equal(servers[0]!.searches.length, 1);
  });

  it('treats several matching entries as no match (ambiguous)', async () => {
    const { dir, servers } = setup();
    servers[0]!.users = [alice, { ...carol, mail: 'alice' }];
    assert.deepEqual(await dir.authenticate(creds('alice', 'alice-pw')), { ok: false });
    assert.equal(await dir.lookup('alice'), null);
    assert.equal(servers[0]!.userBinds.length, 0);
  });

  it('lookup and lookupRecipient return the account; no host attribute gives host null', async () => {
    const { dir } = setup();
    assert.deepEqual(await dir.lookup('carol'), { login: 'carol', mail: 'carol@example.test', host: null, dn: carol.dn });
    assert.equal((await dir.lookupRecipient('alice@example.test'))?.host, 'backend-a');
    assert.equal(await dir.lookupRecipient('nobody@example.test'), null);
  });

  it('sends escaped filters: metacharacters match nobody', async () => {
    const { dir, servers } = setup();
    for (const name of ['*', ')(uid=*', '\\', 'alice)(|(uid=*']) {
      assert.deepEqual(await dir.authenticate(creds(name, 'alice-pw')), { ok: false });
      assert.equal(await dir.lookup(name), null);
    }
    assert.deepEqual(servers[0]!.userBinds, []);
    assert.ok(servers[0]!.searches.every((f) => !f.includes('uid=*)')), servers[0]!.searches.join(' '));
  });

  it('keeps one service connection for many requests and always sets both timeouts', async () => {
    const { dir, servers, options } = setup(['ldap://one:389'], { timeoutMs: 1234, connectTimeoutMs: 567 });
    await Promise.all(Array.from({ length: 10 }, () => dir.lookup('alice')));
    await dir.authenticate(creds('alice', 'alice-pw'));
    assert.equal(servers[0]!.serviceBinds, 1);
    assert.equal(servers[0]!.clientsCreated, 2); // the service connection + one short-lived user bind
    for (const o of options) assert.deepEqual([o.timeout, o.connectTimeout], [1234, 567]);
    assert.equal(options[0]!.tlsOptions, undefined);
  });

  it('server down: DIRECTORY_UNAVAILABLE, never { ok: false }', async () => {
    const { dir, servers } = setup();
    servers[0]!.mode = 'refused';
    await rejectsUnavailable(dir.authenticate(creds('alice', 'alice-pw')));
    await rejectsUnavailable(dir.lookup('alice'));
    servers[0]!.mode = 'timeout';
    await rejectsUnavailable(dir.lookupRecipient('alice@example.test'));
  });

  it('a wrong service password is DIRECTORY_UNAVAILABLE, not a user failure', async () => {
    const { dir } = setup(['ldap://one:389'], { bindPassword: 'wrong' });
    await rejectsUnavailable(dir.authenticate(creds('alice', 'alice-pw')));
  });

  it('a result-code error from the server is DIRECTORY_UNAVAILABLE', async () => {
    const { dir, servers } = setup();
    servers[0]!.mode = 'denied';
    await rejectsUnavailable(dir.lookup('alice'));
  });

  it('fails over in order, skips the failed server until a probe succeeds, and prefers it again after failbackAfterMs', async () => {
    const { dir, servers, advance } = setup(['ldap://one:389', 'ldap://two:389'], { failbackAfterMs: 30_000 });
    const [one, two] = servers as [FakeServer, FakeServer];
    one.mode = 'refused';
    assert.equal((await dir.lookup('alice'))?.host, 'backend-a');
    assert.equal(two.searches.length, 1);
    const oneClients = one.clientsCreated;
    await dir.lookup('alice');
    assert.equal(one.clientsCreated, oneClients, 'failed server is skipped');
    assert.equal(two.serviceBinds, 1, 'service connection to the second server is reused');
    let up = await registry.getSingleMetricAsString('mailproxy_ldap_up');
    assert.match(up, /server="ldap:\/\/one:389"} 0/);
    assert.match(up, /server="ldap:\/\/two:389"} 1/);

    one.mode = 'up';
    advance(60_000);
    await dir.lookup('alice');
    assert.equal(one.searches.length, 0, 'no request tries a down server, however long ago it failed');
    await dir.probeAll();
    up = await registry.getSingleMetricAsString('mailproxy_ldap_up');
    assert.match(up, /server="ldap:\/\/one:389"} 1/);
    advance(29_000);
    await dir.lookup('alice');
    assert.equal(one.searches.length, 0, 'a recovered server is used after the steady ones for failbackAfterMs');
    advance(1_000);
    await dir.lookup('alice');
    assert.equal(one.searches.length, 1, 'preferred again after failbackAfterMs');
    await dir.authenticate(creds('alice', 'alice-pw'));
    assert.deepEqual(one.userBinds, [alice.dn], 'the user bind goes to the server that found the entry');
  });

  it('tries each server once per request when all fail', async () => {
    const { dir, servers } = setup(['ldap://one:389', 'ldap://two:389']);
    for (const s of servers) s.mode = 'refused';
    await rejectsUnavailable(dir.lookup('alice'));
    assert.deepEqual(servers.map((s) => s.clientsCreated), [1, 1]);
  });

  it('records request latency by operation and result', async () => {
    const { dir } = setup();
    await dir.lookup('alice');
    const text = await registry.getSingleMetricAsString('mailproxy_directory_request_seconds');
    assert.match(text, /operation="lookup",result="ok"/);
  });

  it('rejects a zero timeout (ldapts would wait forever) with CONFIG_INVALID', () => {
    for (const o of [{ timeoutMs: 0 }, { connectTimeoutMs: 0 }]) {
      assert.throws(() => setup(['ldap://one:389'], o), (e: unknown) => isProxyError(e) && e.code === 'CONFIG_INVALID');
    }
  });

  it('rejects an invalid filter template at construction with CONFIG_INVALID', () => {
    assert.throws(() => setup(['ldap://one:389'], { filter: '(uid=%u' }), (e: unknown) => isProxyError(e) && e.code === 'CONFIG_INVALID');
  });
  it('StartTLS: every ldap:// connection upgrades before its first bind or search, with the CA and host name', async () => {
    const { dir, servers, options } = setup(['ldap://ldap1.example.test:389'], { startTls: true, tlsCa: 'PEM' });
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
    assert.deepEqual(servers[0]!.events, [['starttls', 'bind', 'search'], ['starttls', 'bind']]);
    assert.equal(options[0]!.tlsOptions, undefined, 'plain ldap:// URL: the TLS options go to startTLS, not the connection');
    for (const o of servers[0]!.startTlsOptions) assert.deepEqual([o['ca'], o['servername'], o['minVersion']], ['PEM', 'ldap1.example.test', 'TLSv1.2']);
  });

  it('StartTLS is not attempted on ldaps:// URLs, which get the TLS options (CA, verification) on connect', async () => {
    const { dir, servers, options } = setup(['ldaps://ldap1.example.test:636'], { startTls: true, tlsCa: 'PEM', tlsVerify: true });
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
    assert.deepEqual(servers[0]!.events, [['bind', 'search'], ['bind']]);
    const tls = options[0]!.tlsOptions!;
    assert.deepEqual([tls.ca, tls.rejectUnauthorized, tls.servername, tls.minVersion], ['PEM', true, 'ldap1.example.test', 'TLSv1.2']);
  });

  it('replaces a lost service connection instead of letting the client reconnect without StartTLS', async () => {
    const { dir, servers, clients } = setup(['ldap://one:389'], { startTls: true });
    assert.ok(await dir.lookup('alice'));
    assert.ok(await dir.lookup('carol'));
    assert.equal(servers[0]!.clientsCreated, 1, 'a live connection is reused');
    clients[0]!.drop();
    assert.ok(await dir.lookup('alice'));
    assert.equal(servers[0]!.clientsCreated, 2);
    assert.deepEqual(servers[0]!.events[1], ['starttls', 'bind', 'search']);
  });

  it('a server that stalls in StartTLS fails the request after timeoutMs as unavailable (never a wrong password)', async () => {
    const { dir, servers } = setup(['ldap://one:389'], { startTls: true, timeoutMs: 50 });
    servers[0]!.stallStartTls = true;
    const t0 = Date.now();
    await rejectsUnavailable(dir.authenticate(creds('alice', 'alice-pw')));
    assert.ok(Date.now() - t0 < 2000);
    assert.deepEqual(servers[0]!.events, [['starttls']], 'nothing was sent before TLS');
  });
  it('hedging: a hung first server costs hedgeDelayMs once; after timeoutMs it is down for every request until a probe succeeds', async () => {
    const { dir, servers } = setup(['ldap://one:389', 'ldap://two:389'], { hedgeDelayMs: 30, timeoutMs: 120 });
    const [one, two] = servers as [FakeServer, FakeServer];
    assert.ok(await dir.lookup('alice'));
    one.mode = 'hang';
    let t0 = Date.now();
    const all = await Promise.all(['alice', 'carol', 'alice', 'carol'].map((u) => dir.lookup(u).then(() => Date.now() - t0)));
    assert.ok(all.every((ms) => ms >= 25 && ms < 110), `answered by the second server after the hedge delay: ${all.join(', ')} ms`);
    assert.equal(two.searches.length, 4);
    await new Promise((r) => setTimeout(r, 150)); // past timeoutMs: the hung attempts time out and mark one down
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/one:389"} 0/);
    const before = one.events.flat().length;
    t0 = Date.now();
    assert.ok(await dir.authenticate(creds('alice', 'alice-pw')));
    assert.ok(Date.now() - t0 < 25, 'no hedge delay once the server is down');
    assert.equal(one.events.flat().length, before, 'nothing more was sent to the hung server');
    one.mode = 'up';
    await dir.probeAll();
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/one:389"} 1/);
  });

  it('all servers hung: the request fails within timeoutMs + hedgeDelayMs, then every request fails at once', async () => {
    const { dir, servers } = setup(['ldap://one:389', 'ldap://two:389'], { hedgeDelayMs: 30, timeoutMs: 100 });
    for (const s of servers) s.mode = 'hang';
    let t0 = Date.now();
    await rejectsUnavailable(dir.authenticate(creds('alice', 'alice-pw')));
    const first = Date.now() - t0;
    assert.ok(first >= 90 && first < 200, `${first} ms`);
    await new Promise((r) => setTimeout(r, 50));
    t0 = Date.now();
    await Promise.all(Array.from({ length: 5 }, () => rejectsUnavailable(dir.lookup('alice'))));
    const ms = Date.now() - t0;
    assert.ok(ms < 60, `no waiting once both are known down (${ms} ms, ${JSON.stringify(dir.poolStats())})`);
    for (const s of servers) s.mode = 'up';
    await dir.probeAll();
    assert.ok(await dir.lookup('alice'));
  });

  it('pool: user binds reuse at most pool.size connections per server, one bind at a time each', async () => {
    const { dir, servers } = setup(['ldap://one:389'], { pool: { size: 2, idleTimeoutMs: 60_000, onServerFailure: 'close-all' } });
    for (let i = 0; i < 3; i++) {
      const results = await Promise.all(Array.from({ length: 6 }, (_, k) => dir.authenticate(creds('alice', k % 3 ? 'alice-pw' : 'wrong'))));
      assert.deepEqual(results.map((r) => r.ok), [false, true, true, false, true, true]);
    }
    assert.equal(servers[0]!.clientsCreated, 3, 'one service connection and two bind connections for 18 logins');
    assert.equal(servers[0]!.serviceBinds, 1);
    assert.equal(servers[0]!.userBinds.length, 18);
    assert.deepEqual(dir.poolStats().map((p) => [p.idle, p.lent, p.waiting]), [[2, 0, 0]]);
  });

  it('pool: a kept connection the server closed is replaced at once, without marking the server down', async () => {
    const { dir, servers, clients } = setup(['ldap://one:389']);
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
    for (const c of clients) c.drop();
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
    assert.equal(servers[0]!.clientsCreated, 4);
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/one:389"} 1/);
  });

  it('onServerFailure close-all closes the idle pooled connections of a failed server; close-one keeps them', async () => {
    for (const [policy, expected] of [['close-all', 4], ['close-one', 2]] as const) {
      const { dir, servers } = setup(['ldap://one:389', 'ldap://two:389'], { hedgeDelayMs: 0, pool: { size: 4, idleTimeoutMs: 60_000, onServerFailure: policy } });
      await Promise.all([dir.authenticate(creds('alice', 'alice-pw')), dir.authenticate(creds('alice', 'alice-pw'))]);
      const closedBefore = servers[0]!.closed;
      servers[0]!.mode = 'refused';
      servers[0]!.users = [];
      assert.ok(await dir.lookup('alice'), 'failed over');
      // the kept service connection and its fresh replacement are closed either way; close-all also closes the two idle bind connections
      assert.equal(servers[0]!.closed - closedBefore, expected, policy);
    }
  });

  it('this host out of descriptors (EMFILE on new connections): servers stay up and their pooled connections open; a request that needs a new one fails LOCAL_RESOURCES', async () => {
    const { dir, servers } = setup(['ldap://one:389', 'ldap://two:389'], { hedgeDelayMs: 0 });
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
    for (const s of servers) s.mode = 'emfile';
    await dir.probeAll();
    assert.deepEqual(dir.poolStats().map((p) => [p.up, p.service, p.idle]), [[true, 1, 1], [true, 0, 0]], 'servers up, pooled connections kept (close-all did not run)');
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/one:389"} 1/);
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/two:389"} 1/);
    // The kept service and bind connections still serve.
    assert.ok(await dir.lookup('alice'));
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
    // Two at once: the second bind needs a new connection, which this host cannot open.
    const both = await Promise.allSettled([dir.authenticate(creds('alice', 'alice-pw')), dir.authenticate(creds('alice', 'alice-pw'))]);
    assert.equal(both.filter((r) => r.status === 'fulfilled').length, 1);
    const refused = both.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    assert.ok(isProxyError(refused.reason) && refused.reason.code === 'LOCAL_RESOURCES', String(refused.reason));
    assert.deepEqual(dir.poolStats().map((s) => s.up), [true, true], 'no server marked down');
    for (const s of servers) s.mode = 'up';
    assert.equal((await dir.authenticate(creds('alice', 'alice-pw'))).ok, true);
  });

  it('probes: a rejected service bind (password rotated in LDAP only) is logged at once, once, and again after a good probe; the server stays up', async () => {
    const out: string[] = [];
    let now = 1_000_000;
    const servers = [new FakeServer('ldap://one:389')];
    const { factory } = fakeFactory(servers);
    const config = ldapSchemaDefaults({ urls: ['ldap://one:389'], bindDN: SERVICE_DN, bindPassword: 'rotated-away', filter: '(uid=%u)' });
    const logger = createLogger('info', new Writable({ write(c: Buffer, _e, cb) { out.push(c.toString()); cb(); } }));
    const dir = new LdapDirectory(config, logger, () => now, factory);
    const rejected = () => out.filter((l) => l.includes('service account bind rejected') && l.includes('LDAP probe')).length;
    await dir.probeAll();
    await dir.probeAll();
    assert.equal(rejected(), 1, 'logged once while it lasts');
    const bindOk = async () => /server="ldap:\/\/one:389"} (\d)/.exec(await registry.getSingleMetricAsString('mailproxy_ldap_service_bind_ok'))?.[1];
    assert.equal(await bindOk(), '0', 'the gauge the alert reads');
    assert.ok(out.every((l) => !l.includes('rotated-away')), 'never the password');
    assert.deepEqual(dir.poolStats().map((p) => p.up), [true], 'an answering server stays up');
    (config as { bindPassword?: string }).bindPassword = 'svc-pw';
    await dir.probeAll();
    assert.equal(await bindOk(), '1');
    (config as { bindPassword?: string }).bindPassword = 'rotated-away';
    now += 1000;
    await dir.probeAll();
    assert.equal(rejected(), 2, 'a new episode after a good probe is logged again');
    await dir.close();
  });

  it('probes: a dead server is reported down by the probe alone (no request needed), and up again when it answers', async () => {
    const { dir, servers } = setup(['ldap://one:389', 'ldap://two:389']);
    servers[1]!.mode = 'refused';
    await dir.probeAll();
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/two:389"} 0/);
    assert.deepEqual(servers[0]!.events.at(-1), ['bind', 'search'], 'probe: service bind and a base search');
    servers[1]!.mode = 'up';
    await dir.probeAll();
    assert.match(await registry.getSingleMetricAsString('mailproxy_ldap_up'), /server="ldap:\/\/two:389"} 1/);
  });
});
