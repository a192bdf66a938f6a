// Proves planListeners, the pure part of a SIGHUP listener reload: which sockets are kept (and re-configured), bound anew or closed.
import assert from 'node:assert/strict';
import { planListeners } from '../../../src/server.js';
import type { ListenerConfig } from '../../../src/config/schema.js';

const L = (protocol: ListenerConfig['protocol'], port: number, extra: Partial<ListenerConfig> = {}): ListenerConfig =>
  ({ protocol, address: '127.0.0.1', port, tls: 'none', proxyProtocol: false, proxyTrustedNetworks: [], ...extra }) as ListenerConfig;
const running = (...configs: ListenerConfig[]) => configs.map((config, i) => ({ config, name: `old${i}` }));

describe('planListeners (SIGHUP listener changes)', () => {
  it('keeps a socket whose address and port stay, with its new settings (protocol, TLS, PROXY, limits)', () => {
    const cur = running(L('imap', 143), L('pop3', 110));
    const next = [L('imap', 143, { tls: 'starttls', maxConnections: 5 }), L('imap', 110, { proxyProtocol: true })];
    const plan = planListeners(cur, next);
    assert.deepEqual(plan.keep.map((k) => [k.listener.name, k.config.protocol, k.config.port, k.index]), [['old0', 'imap', 143, 0], ['old1', 'imap', 110, 1]]);
    assert.equal(plan.keep[0]!.config.maxConnections, 5);
    assert.deepEqual([plan.add, plan.remove], [[], []]);
  });

  it('binds what is new and closes what is gone, keeping the new order by index', () => {
    const cur = running(L('imap', 143), L('imap', 993, { tls: 'implicit' }));
    const plan = planListeners(cur, [L('pop3', 110), L('imap', 143), L('imap', 143, { address: '::1' })]);
    assert.deepEqual(plan.keep.map((k) => [k.listener.name, k.index]), [['old0', 1]]);
    assert.deepEqual(plan.add.map((a) => [a.config.protocol, a.config.address, a.config.port, a.index]), [['pop3', '127.0.0.1', 110, 0], ['imap', '::1', 143, 2]]);
    assert.deepEqual(plan.remove.map((r) => r.name), ['old1']);
  });

  it('port 0 (any free port) is kept only by an identical listener; otherwise it is a new socket', () => {
    const cur = running(L('imap', 0), L('pop3', 0));
    const plan = planListeners(cur, [L('imap', 0), L('pop3', 0, { maxConnections: 1 })]);
    assert.deepEqual(plan.keep.map((k) => k.listener.name), ['old0']);
    assert.deepEqual(plan.add.map((a) => [a.config.protocol, a.index]), [['pop3', 1]]);
    assert.deepEqual(plan.remove.map((r) => r.name), ['old1']);
  });

  it('two new listeners on one address and port: the first keeps the socket, the second is a new bind (which will fail loudly)', () => {
    const plan = planListeners(running(L('imap', 143)), [L('imap', 143), L('pop3', 143)]);
    assert.deepEqual([plan.keep.length, plan.add.length, plan.remove.length], [1, 1, 0]);
  });
});
