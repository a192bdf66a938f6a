// Unit tests for loop protection: own-listener detection (literal, wildcard + interfaces, loopback) and the hop count.
// Must not open sockets.
import assert from 'node:assert/strict';
import { isOwnListener, nextHop, plainIp } from '../../../src/proxy/loop-guard.js';

describe('loop guard', () => {
  const local = new Set(['127.0.0.1', '::1', '10.1.2.3', 'fe80::1']);
  const listeners = [{ address: '0.0.0.0', port: 143 }, { address: '127.0.0.1', port: 10143 }, { address: '10.9.9.9', port: 993 }, { address: '::', port: 110 }];

  it('a backend on a wildcard listener port is us when its address is local or loopback', () => {
    assert.equal(isOwnListener('10.1.2.3', 143, listeners, local), true);
    assert.equal(isOwnListener('127.0.0.5', 143, listeners, local), true);
    assert.equal(isOwnListener('::ffff:10.1.2.3', 143, listeners, local), true);
    assert.equal(isOwnListener('10.1.2.4', 143, listeners, local), false, 'another host');
    assert.equal(isOwnListener('10.1.2.3', 144, listeners, local), false, 'another port');
    assert.equal(isOwnListener('::1', 110, listeners, local), true);
  });

  it('a specific listener matches only its own address', () => {
    assert.equal(isOwnListener('127.0.0.1', 10143, listeners, local), true);
    assert.equal(isOwnListener('127.0.0.2', 10143, listeners, local), false);
    assert.equal(isOwnListener('10.9.9.9', 993, listeners, local), true);
    assert.equal(isOwnListener('localhost', 143, listeners, local), true);
  });

  it('port 0 (not bound yet) never matches', () => {
    assert.equal(isOwnListener('127.0.0.1', 0, [{ address: '127.0.0.1', port: 0 }], local), false);
  });

  it('normalises IPv4-mapped and upper-case IPv6', () => {
    assert.equal(plainIp('::FFFF:127.0.0.1'), '127.0.0.1');
    assert.equal(plainIp('FE80::1%eth0'), 'fe80::1');
  });

  it('hop count: trusted x-proxy-ttl is decremented; 1 or less is a loop; untrusted or bad values use the start value', () => {
    assert.deepEqual(nextHop(undefined, false, 5), { ok: true, next: 4 });
    assert.deepEqual(nextHop('3', true, 5), { ok: true, next: 2 });
    assert.deepEqual(nextHop('1', true, 5), { ok: false, ttl: 1 });
    assert.deepEqual(nextHop('0', true, 5), { ok: false, ttl: 0 });
    assert.deepEqual(nextHop('0', false, 5), { ok: true, next: 4 }, 'an untrusted client cannot shorten or lengthen the path');
    assert.deepEqual(nextHop('99', true, 5), { ok: true, next: 4 }, 'never more than our own start value');
    assert.deepEqual(nextHop('x', true, 5), { ok: true, next: 4 });
    assert.deepEqual(nextHop(undefined, false, 1), { ok: false, ttl: 1 });
  });
});

import { configSchema } from '../../../src/config/schema.js';

describe('config: a backend that is one of our own listeners is refused at load', () => {
  const base = (host: string, port: number, listenAddress = '0.0.0.0') => ({
    listeners: [{ protocol: 'imap', address: listenAddress, port: 10143, tls: 'none' }],
    directory: { type: 'static', static: { file: 'x' } },
    backends: { self: { host, imap: { port } } },
  });
  it('names the backend key and the listener', () => {
    const r = configSchema.safeParse(base('127.0.0.1', 10143));
    assert.equal(r.success, false);
    assert.match(JSON.stringify(r.error?.issues), /own listeners\[0\]/);
    assert.deepEqual(r.error?.issues[0]?.path, ['backends', 'self', 'imap', 'port']);
    assert.equal(configSchema.safeParse(base('10.0.0.7', 10143, '10.0.0.7')).success, false);
  });
  it('another port or another host is fine', () => {
    assert.equal(configSchema.safeParse(base('127.0.0.1', 143)).success, true);
    assert.equal(configSchema.safeParse(base('10.0.0.8', 10143)).success, true);
    assert.equal(configSchema.safeParse(base('127.0.0.1', 10143, '10.0.0.7')).success, true);
  });
  it('defaults: proxyTtl 5, no trusted networks; sourceAddresses must be IP addresses', () => {
    const c = configSchema.parse(base('10.0.0.8', 143));
    assert.deepEqual(c.loopProtection, { proxyTtl: 5, trustedNetworks: [], selfAddresses: [] });
    assert.deepEqual(c.backends['self']?.sourceAddresses, []);
    const bad = base('10.0.0.8', 143) as { backends: { self: Record<string, unknown> } };
    bad.backends.self['sourceAddresses'] = ['eth0'];
    assert.equal(configSchema.safeParse(bad).success, false);
  });
});

import { createBackendGuard } from '../../../src/proxy/backend-guard.js';

describe('backend guard', () => {
  it('refuses an IP route to a bound listener or to a selfAddress (any port) before connecting; names pass to the after-connect check', () => {
    const guard = createBackendGuard(() => [{ address: '127.0.0.1', port: 10143 }], () => ['192.0.2.10']);
    assert.throws(() => guard.checkRoute({ backend: 'b', host: '127.0.0.1', port: 10143 }), (e: Error & { code?: string }) => e.code === 'ROUTE_LOOP');
    assert.throws(() => guard.checkRoute({ backend: 'b', host: '192.0.2.10', port: 143 }), (e: Error & { code?: string }) => e.code === 'ROUTE_LOOP');
    assert.doesNotThrow(() => guard.checkRoute({ backend: 'b', host: '127.0.0.1', port: 143 }));
    assert.doesNotThrow(() => guard.checkRoute({ backend: 'b', host: 'localhost', port: 10143 }));
    assert.equal(guard.isOwn('::ffff:127.0.0.1', 10143), true);
    assert.equal(guard.isOwn(undefined, 10143), false);
  });

  it('leases source addresses only for backends that have them', () => {
    const guard = createBackendGuard(() => []);
    assert.equal(guard.lease({ host: 'b', port: 143 }), undefined);
    const l = guard.lease({ host: 'b', port: 143, sourceAddresses: ['127.0.0.2', '127.0.0.3'] });
    assert.equal(l?.address, '127.0.0.2');
    l?.release();
  });
});
