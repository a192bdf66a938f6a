import assert from 'node:assert/strict';
import { namePart, TierKeys } from '../../../src/tier/keys.js';
import { instanceNameOf, makeInstanceId } from '../../../src/tier/presence.js';
import { redisOptions } from '../../../src/tier/client.js';
import { tierSchema } from '../../../src/config/tier-schema.js';

describe('tier keys and options', () => {
  const keys = new TierKeys('mp:');

  it('never puts client text into a key: names and addresses are hashed, user names case-insensitively', () => {
    for (const hostile of ['alice', 'a{b}c', '*', 'x\r\nDEL *', 'ünï', '../..', '']) {
      const k = keys.userSessions(hostile);
      assert.match(k, /^mp:su:[A-Za-z0-9_-]{22}$/, k);
    }
    assert.equal(keys.userFailures('Alice '), keys.userFailures('alice'));
    assert.notEqual(keys.userFailures('alice'), keys.userFailures('bob'));
    assert.notEqual(namePart('user', '192.0.2.1'), namePart('addr', '192.0.2.1'), 'kinds never collide');
    assert.match(keys.addressFailures('::ffff:192.0.2.1'), /^mp:pa:[A-Za-z0-9_-]{22}$/);
  });

  it('instance ids are name#epoch, new for each start', () => {
    const a = makeInstanceId('mx-1');
    assert.equal(instanceNameOf(a), 'mx-1');
    assert.notEqual(a, makeInstanceId('mx-1'));
  });

  it('maps standalone and Sentinel configs to ioredis options with a fail-fast client', () => {
    const standalone = tierSchema.parse({ redis: { host: 'r1', port: 6380, username: 'mp', password: 'pw', tls: { ca: 'PEM', serverName: 'redis.internal' } } });
    const o = redisOptions(standalone, 'n');
    assert.equal(o.host, 'r1');
    assert.equal(o.port, 6380);
    assert.equal(o.username, 'mp');
    assert.equal(o.enableOfflineQueue, false);
    assert.deepEqual(o.tls, { ca: 'PEM', servername: 'redis.internal' });
    const sentinel = tierSchema.parse({ redis: { sentinel: { name: 'mp', sentinels: [{ host: 's1', port: 26379 }], password: 'spw', tls: true }, tls: {} } });
    const s = redisOptions(sentinel, 'n');
    assert.equal(s.name, 'mp');
    assert.deepEqual(s.sentinels, [{ host: 's1', port: 26379 }]);
    assert.equal(s.sentinelPassword, 'spw');
    assert.equal(s.enableTLSForSentinelMode, true);
    assert.equal(s.failoverDetector, true);
    assert.deepEqual(s.sentinelTLS, {}, 'sentinel.tls without a CA: system CAs');
    // redis.tls alone: TLS to the primary the Sentinels name (ioredis talks plain TCP to it without enableTLSForSentinelMode),
    // plain TCP to the Sentinels.
    const dataTls = redisOptions(tierSchema.parse({ redis: { sentinel: { name: 'mp', sentinels: [{ host: 's1', port: 26379 }] }, tls: { ca: 'PEM' } } }), 'n');
    assert.deepEqual(dataTls.tls, { ca: 'PEM' });
    assert.equal(dataTls.enableTLSForSentinelMode, true);
    assert.equal(dataTls.sentinelTLS, undefined);
    // sentinel.tls alone: TLS to the Sentinels (system CAs), plain TCP to the primary.
    const sentinelTls = redisOptions(tierSchema.parse({ redis: { sentinel: { name: 'mp', sentinels: [{ host: 's1', port: 26379 }], tls: true } } }), 'n');
    assert.deepEqual(sentinelTls.sentinelTLS, {});
    assert.equal(sentinelTls.tls, undefined);
    assert.notEqual(sentinelTls.enableTLSForSentinelMode, true);
    const both = redisOptions(tierSchema.parse({ redis: { sentinel: { name: 'mp', sentinels: [{ host: 's1', port: 26379 }], tls: true }, tls: { ca: 'PEM' } } }), 'n');
    assert.deepEqual([both.tls, both.sentinelTLS, both.enableTLSForSentinelMode], [{ ca: 'PEM' }, { ca: 'PEM' }, true]);
  });

  it('rejects a redis section with both or neither of host and sentinel, and unsafe prefixes or names', () => {
    assert.equal(tierSchema.safeParse({ redis: {} }).success, false);
    assert.equal(tierSchema.safeParse({ redis: { host: 'a', sentinel: { name: 'x', sentinels: [{ host: 's', port: 1 }] } } }).success, false);
    assert.equal(tierSchema.safeParse({ redis: { host: 'a' }, keyPrefix: 'a b*' }).success, false);
    assert.equal(tierSchema.safeParse({ redis: { host: 'a' }, instanceName: 'x|y' }).success, false);
    const d = tierSchema.parse({ redis: { host: 'a' } });
    assert.equal(d.commandTimeoutMs, 50);
    assert.equal(d.backendView.downQuorum, 'majority');
    assert.equal(d.limits.maxSessionsPerUser.imap, 0);
  });
});
