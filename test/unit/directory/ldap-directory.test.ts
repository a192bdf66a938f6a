// Proves LdapDirectory's logic with a fake ldapts client: binds, ambiguity, name limits, failover and failback, error mapping.
// Must not need a real slapd (directory-ldap integration tests do).
import assert from 'node:assert/strict';
import { InvalidCredentialsError, InsufficientAccessError, type ClientOptions, type Filter, type SearchOptions } from 'ldapts';
import { ldapSchemaDefaults } from './ldap-fixtures.js';
import { LdapDirectory, type LdapClient } from '../../../src/directory/ldap.js';
import { isProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { registry } from '../../../src/metrics.js';

interface FakeUser { dn: string; uid: string; mail: string; mailHost?: string; password: string }
/** 'slow': like a server that accepts TCP but never answers: each request fails with a timeout after SLOW_MS. */
type Mode = 'up' | 'refused' | 'timeout' | 'denied' | 'slow';
const SLOW_MS = 150;

/** One fake LDAP server: evaluates filters with ldapts' own matcher over a few users, counts what it was asked. */
class FakeServer {
  mode: Mode = 'up';
  users: FakeUser[] = [];
  serviceBinds = 0;
  userBinds: string[] = [];
  searches: string[] = [];
  clientsCreated = 0;
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
        if (server.mode === 'slow') await new Promise((r) => setTimeout(r, SLOW_MS));
        if (server.mode !== 'up') throw server.fail();
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
        if (server.mode === 'slow') await new Promise((r) => setTimeout(r, SLOW_MS));
        if (server.mode !== 'up') throw server.fail();
        connected = true;
        const filter = opts.filter as Filter;
        server.searches.push(filter.toString());
        const hits = server.users.filter((u) => filter.matches({ uid: u.uid, mail: u.mail }));
        const limited = hits.slice(0, opts.sizeLimit || hits.length);
        return {
          searchEntries: limited.map((u) => ({ dn: u.dn, uid: u.uid, mail: u.mail, mailHost: u.mailHost ?? [] })),
          searchReferences: [],
        };
      },
      async unbind() { connected = false; },
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

  it('fails over in order, skips the failed server, and fails back after failbackAfterMs', async () => {
    const { dir, servers, advance } = setup(['ldap://one:389', 'ldap://two:389'], { failbackAfterMs: 30_000 });
    const [one, two] = servers as [FakeServer, FakeServer];
    one.mode = 'refused';
    assert.equal((await dir.lookup('alice'))?.host, 'backend-a');
    assert.equal(two.searches.length, 1);
    const oneClients = one.clientsCreated;
    await dir.lookup('alice');
    assert.equal(one.clientsCreated, oneClients, 'failed server is skipped while it cools down');
    assert.equal(two.serviceBinds, 1, 'service connection to the second server is reused');
    const up = await registry.getSingleMetricAsString('mailproxy_ldap_up');
    assert.match(up, /server="ldap:\/\/one:389"} 0/);
    assert.match(up, /server="ldap:\/\/two:389"} 1/);

    one.mode = 'up';
    advance(29_000);
    await dir.lookup('alice');
    assert.equal(one.searches.length, 0);
    advance(1_000);
    await dir.lookup('alice');
    assert.equal(one.searches.length, 1, 'preferred server retried after failbackAfterMs');
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
  it('a failed server that never answers is retried by one request at a time; the others fail at once, not after the timeout', async () => {
    const { dir, servers } = setup(['ldap://one:389']);
    assert.ok(await dir.lookup('alice'));
    servers[0]!.mode = 'slow';
    await rejectsUnavailable(dir.lookup('alice'));
    const requestsBefore = servers[0]!.events.flat().length;
    const t0 = Date.now();
    const timings = await Promise.all(Array.from({ length: 5 }, async () => {
      const [r] = await Promise.allSettled([dir.lookup('alice')]);
      assert.ok(r!.status === 'rejected' && isProxyError(r!.reason) && r!.reason.code === 'DIRECTORY_UNAVAILABLE');
      return Date.now() - t0;
    }));
    const slow = timings.filter((ms) => ms >= SLOW_MS - 20);
    assert.equal(slow.length, 1, `one request waited for the server, the others failed at once: ${timings.join(', ')} ms`);
    assert.equal(servers[0]!.events.flat().length - requestsBefore, 1, 'only the retrying request reached the server');
    servers[0]!.mode = 'up';
    assert.ok(await dir.lookup('alice'), 'the next request retries it and it is back');
    assert.ok(await Promise.all([dir.lookup('alice'), dir.lookup('carol')]));
  });

  it('failback: one request retries the preferred server; the others go straight to the second meanwhile', async () => {
    const { dir, servers, advance } = setup(['ldap://one:389', 'ldap://two:389']);
    servers[0]!.mode = 'slow';
    assert.ok(await dir.lookup('alice'), 'failed over to two');
    advance(31_000); // past failbackAfterMs: one is first in line again
    const t0 = Date.now();
    const [a, b] = await Promise.all([dir.lookup('alice').then(() => Date.now() - t0), dir.lookup('carol').then(() => Date.now() - t0)]);
    const [first, second] = [a, b].sort((x, y) => x - y);
    assert.ok(first! < SLOW_MS - 20, `${a}, ${b} ms: one request did not wait for the retried server`);
    assert.ok(second! >= SLOW_MS - 20, `${a}, ${b} ms: the other retried it (and then used two)`);
  });
});
