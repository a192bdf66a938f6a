// Proves the directory cache: hits, TTL and negative TTL on a fake clock, coalescing, stale-if-error, no plaintext password kept.
// Must not talk to LDAP; the inner directory is a scripted fake.
import assert from 'node:assert/strict';
import { CachedDirectory } from '../../../src/directory/cached.js';
import type { Account, AuthResult, Directory } from '../../../src/directory/directory.js';
import { ProxyError, isProxyError } from '../../../src/errors.js';
import { registry } from '../../../src/metrics.js';
import type { Credentials } from '../../../src/core/types.js';

const ALICE: Account = { login: 'alice', mail: 'alice@example.test', host: 'backend-a', dn: 'uid=alice,dc=example,dc=test' };
const PASSWORD = 'alice-very-secret-password';

/** An inner directory whose answers and availability the test controls; it counts calls and can hold them open. */
class FakeInner implements Directory {
  calls = { authenticate: 0, lookup: 0, lookupRecipient: 0 };
  down = false;
  accounts = new Map<string, Account>([['alice', ALICE], ['alice@example.test', ALICE]]);
  gate: Promise<void> | null = null;
  private async answer<T>(v: () => T): Promise<T> {
    if (this.gate) await this.gate;
    if (this.down) throw new ProxyError('DIRECTORY_UNAVAILABLE', 'fake outage');
    return v();
  }
  authenticate(c: Credentials): Promise<AuthResult> {
    this.calls.authenticate++;
    return this.answer(() => {
      const a = this.accounts.get(c.user);
      return a && 'password' in c && c.password === PASSWORD ? { ok: true as const, account: a } : { ok: false as const };
    });
  }
  lookup(name: string): Promise<Account | null> { this.calls.lookup++; return this.answer(() => this.accounts.get(name) ?? null); }
  lookupRecipient(a: string): Promise<Account | null> { this.calls.lookupRecipient++; return this.answer(() => this.accounts.get(a) ?? null); }
  async close(): Promise<void> {}
}

const CONFIG = { enabled: true, maxEntries: 1000, ttlMs: 60_000, negativeTtlMs: 10_000, maxStaleMs: 3_600_000 };

function setup(overrides: Partial<typeof CONFIG> = {}) {
  let t = 5_000_000;
  const inner = new FakeInner();
  const cache = new CachedDirectory(inner, { ...CONFIG, ...overrides }, { now: () => t });
  return { inner, cache, advance: (ms: number) => { t += ms; } };
}

const unavailable = (e: unknown) => isProxyError(e) && e.code === 'DIRECTORY_UNAVAILABLE';
const creds = (password: string, user = 'alice'): Credentials => ({ user, password, mechanism: 'PLAIN' });

async function cacheCount(result: string): Promise<number> {
  const m = await registry.getSingleMetric('mailproxy_directory_cache_total')!.get();
  return m.values.find((v) => v.labels['result'] === result)?.value ?? 0;
}

describe('CachedDirectory', () => {
  describe('routes (lookup / lookupRecipient)', () => {
    it('serves a hit from the cache within ttl and asks again after it', async () => {
      const { inner, cache, advance } = setup();
      const hits = await cacheCount('hit');
      assert.deepEqual(await cache.lookup('alice'), ALICE);
      advance(59_999);
      assert.deepEqual(await cache.lookup('alice'), ALICE);
      assert.equal(inner.calls.lookup, 1);
      assert.equal(await cacheCount('hit'), hits + 1);
      advance(1);
      await cache.lookup('alice');
      assert.equal(inner.calls.lookup, 2);
    });

    it('keeps lookup and lookupRecipient apart', async () => {
      const { inner, cache } = setup();
      await cache.lookup('alice@example.test');
      await cache.lookupRecipient('alice@example.test');
      assert.deepEqual([inner.calls.lookup, inner.calls.lookupRecipient], [1, 1]);
    });

    it('caches unknown names for negativeTtlMs only', async () => {
      const { inner, cache, advance } = setup();
      const negatives = await cacheCount('negative');
      assert.equal(await cache.lookup('mallory'), null);
      advance(9_999);
      assert.equal(await cache.lookup('mallory'), null);
      assert.equal(inner.calls.lookup, 1);
      assert.equal(await cacheCount('negative'), negatives + 1);
      inner.accounts.set('mallory', { login: 'mallory', host: 'backend-b' });
      advance(1);
      assert.equal((await cache.lookup('mallory'))?.host, 'backend-b');
      assert.equal(inner.calls.lookup, 2);
    });

    it('coalesces concurrent identical lookups into one inner call', async () => {
      const { inner, cache } = setup();
      let open!: () => void;
      inner.gate = new Promise((r) => { open = r; });
      const all = Promise.all(Array.from({ length: 10 }, () => cache.lookup('alice')));
      await new Promise((r) => setImmediate(r));
      open();
      const results = await all;
      assert.equal(inner.calls.lookup, 1);
      assert.ok(results.every((a) => a?.login === 'alice'));
    });

    it('never caches a temporary failure', async () => {
      const { inner, cache } = setup();
      inner.down = true;
      await assert.rejects(cache.lookup('alice'), unavailable);
      await assert.rejects(cache.lookup('alice'), unavailable);
      assert.equal(inner.calls.lookup, 2);
      inner.down = false;
      assert.deepEqual(await cache.lookup('alice'), ALICE);
      assert.equal(cache.entries().routes.length, 1);
    });

    it('coalesced waiters all see a failure, and the next call tries again', async () => {
      const { inner, cache } = setup();
      inner.down = true;
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.lookup('alice')));
      assert.ok(results.every((r) => r.status === 'rejected'));
      assert.equal(inner.calls.lookup, 1);
      inner.down = false;
      assert.deepEqual(await cache.lookup('alice'), ALICE);
    });

    it('serves the last good route while the directory fails, for up to maxStaleMs past expiry', async () => {
      const { inner, cache, advance } = setup({ ttlMs: 1_000, maxStaleMs: 10_000 });
      await cache.lookup('alice');
      await cache.lookupRecipient('alice@example.test');
      inner.down = true;
      const stale = await cacheCount('stale');
      advance(1_000 + 9_999);
      assert.deepEqual(await cache.lookup('alice'), ALICE);
      assert.deepEqual(await cache.lookupRecipient('alice@example.test'), ALICE);
      assert.equal(await cacheCount('stale'), stale + 2);
      advance(1);
      await assert.rejects(cache.lookup('alice'), unavailable);
      await assert.rejects(cache.lookupRecipient('alice@example.test'), unavailable);
    });

    it('does not serve a negative result stale', async () => {
      const { inner, cache, advance } = setup();
      await cache.lookup('mallory');
      advance(10_000);
      inner.down = true;
      await assert.rejects(cache.lookup('mallory'), unavailable);
    });

    it('other errors are not answered from stale data', async () => {
      const { inner, cache, advance } = setup({ ttlMs: 1 });
      await cache.lookup('alice');
      advance(5);
      inner.lookup = async () => { throw new ProxyError('INTERNAL', 'bug'); };
      await assert.rejects(cache.lookup('alice'), (e: unknown) => isProxyError(e) && e.code === 'INTERNAL');
    });
  });

  describe('verdicts (authenticate)', () => {
    it('caches a positive verdict for ttl; a wrong password always goes to the directory', async () => {
      const { inner, cache, advance } = setup();
      assert.deepEqual(await cache.authenticate(creds(PASSWORD)), { ok: true, account: ALICE });
      assert.deepEqual(await cache.authenticate(creds(PASSWORD)), { ok: true, account: ALICE });
      assert.equal(inner.calls.authenticate, 1);
      assert.deepEqual(await cache.authenticate(creds('wrong')), { ok: false });
      assert.deepEqual(await cache.authenticate(creds('wrong')), { ok: false });
      assert.equal(inner.calls.authenticate, 3);
      advance(60_000);
      await cache.authenticate(creds(PASSWORD));
      assert.equal(inner.calls.authenticate, 4);
    });

    it('a verdict is bound to user and password together', async () => {
      const { inner, cache } = setup();
      inner.accounts.set('bob', { login: 'bob', host: 'backend-b' });
      await cache.authenticate(creds(PASSWORD));
      assert.deepEqual(await cache.authenticate(creds(PASSWORD, 'bob')), { ok: true, account: { login: 'bob', host: 'backend-b' } });
      assert.equal(inner.calls.authenticate, 2);
    });

    it('empty passwords bypass the cache', async () => {
      const { inner, cache } = setup();
      assert.deepEqual(await cache.authenticate(creds('')), { ok: false });
      assert.equal(cache.entries().verdicts.length, 0);
      assert.equal(inner.calls.authenticate, 1);
    });

    it('accepts a recently verified credential while the directory is unavailable, within maxStaleMs', async () => {
      const { inner, cache, advance } = setup({ ttlMs: 1_000, maxStaleMs: 5_000 });
      await cache.authenticate(creds(PASSWORD));
      inner.down = true;
      advance(5_999);
      assert.deepEqual(await cache.authenticate(creds(PASSWORD)), { ok: true, account: ALICE });
      await assert.rejects(cache.authenticate(creds('another-password')), unavailable);
      advance(1);
      await assert.rejects(cache.authenticate(creds(PASSWORD)), unavailable);
    });

    it('a later rejection of the same credential drops its verdict', async () => {
      const { inner, cache, advance } = setup({ ttlMs: 1_000 });
      await cache.authenticate(creds(PASSWORD));
      advance(1_000);
      inner.accounts.delete('alice');
      assert.deepEqual(await cache.authenticate(creds(PASSWORD)), { ok: false });
      inner.down = true;
      await assert.rejects(cache.authenticate(creds(PASSWORD)), unavailable);
    });

    it('coalesces concurrent identical authentications', async () => {
      const { inner, cache } = setup();
      let open!: () => void;
      inner.gate = new Promise((r) => { open = r; });
      const all = Promise.all(Array.from({ length: 10 }, () => cache.authenticate(creds(PASSWORD))));
      await new Promise((r) => setImmediate(r));
      open();
      assert.ok((await all).every((r) => r.ok));
      assert.equal(inner.calls.authenticate, 1);
    });

    it('holds no plaintext password (nor its base64/hex) in keys or values', async () => {
      const { cache } = setup();
      await cache.authenticate(creds(PASSWORD));
      await cache.lookup('alice');
      const { routes, verdicts } = cache.entries();
      assert.equal(verdicts.length, 1);
      const dump = JSON.stringify({ routes, verdicts });
      for (const form of [PASSWORD, Buffer.from(PASSWORD).toString('base64'), Buffer.from(PASSWORD).toString('hex'), 'very-secret']) {
        assert.ok(!dump.includes(form), `cache dump contains ${form}`);
      }
      assert.match(verdicts[0]![0], /^[A-Za-z0-9+/]{43}=$/, 'key is an HMAC-SHA256 digest');
    });

    it('two instances derive different keys for the same credential (per-process random HMAC key)', async () => {
      const a = setup().cache;
      const b = setup().cache;
      await a.authenticate(creds(PASSWORD));
      await b.authenticate(creds(PASSWORD));
      assert.notEqual(a.entries().verdicts[0]![0], b.entries().verdicts[0]![0]);
    });
  });

  it('invalidate(user) drops the routes and verdicts of that account only (route invalidation for a mailbox move)', async () => {
    const { inner, cache } = setup();
    const BOB: Account = { login: 'bob', host: 'backend-b' };
    inner.accounts.set('bob', BOB);
    await cache.lookup('alice');
    await cache.lookup('alice@example.test');
    await cache.authenticate(creds(PASSWORD));
    await cache.lookup('bob');
    assert.equal(cache.invalidate('ALICE'), 3);
    assert.deepEqual(cache.entries().routes.map(([k]) => k), ['lookup\0bob']);
    assert.equal(cache.entries().verdicts.length, 0);
    // The next login asks the directory again (and would see the new mailHost).
    const before = inner.calls.authenticate;
    await cache.authenticate(creds(PASSWORD));
    assert.equal(inner.calls.authenticate, before + 1);
  });

  it('close() empties the cache and closes the inner directory', async () => {
    const { inner, cache } = setup();
    let closed = false;
    inner.close = async () => { closed = true; };
    await cache.lookup('alice');
    await cache.close();
    assert.equal(cache.entries().routes.length, 0);
    assert.ok(closed);
  });
});
