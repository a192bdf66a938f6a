// Proves split-brain detection from greeting identities: alternation within the window, not a single failover; clears when stable.
// Must not involve sockets or the health facade (health-monitor tests cover policy and side effects).
import assert from 'node:assert/strict';
import { IdentityTracker } from '../../../src/health/split-brain.js';

const opts = { windowMs: 10_000, stableMs: 30_000 };

describe('health/split-brain', () => {
  it('a single change (a failover) and a later change back (a failback) are not a split brain', () => {
    const t = new IdentityTracker(opts);
    for (let i = 0; i < 5; i++) assert.equal(t.observe('node1', i * 1000), null);
    for (let i = 5; i < 30; i++) assert.equal(t.observe('node2', i * 1000), null);
    assert.equal(t.observe('node1', 30_000), null);
    assert.equal(t.active, false);
  });

  it('two identities answering in turn within the window are a split brain (A B A B)', () => {
    const t = new IdentityTracker(opts);
    assert.equal(t.observe('node1', 0), null);
    assert.equal(t.observe('node2', 100), null);
    assert.equal(t.observe('node1', 200), null, 'one return could still be a connection racing a failover');
    const ev = t.observe('node2', 300);
    assert.deepEqual(ev, { kind: 'entered', identities: ['node1', 'node2'] });
    assert.equal(t.active, true);
    assert.equal(t.observe('node1', 400), null, 'entered once');
  });

  it('alternation spread wider than the window is not a split brain', () => {
    const t = new IdentityTracker(opts);
    t.observe('a', 0);
    t.observe('b', 6000);
    t.observe('a', 12_000);
    t.observe('b', 18_000);
    assert.equal(t.active, false);
  });

  it('clears once one identity has been the only one for stableMs; an empty identity only lets time pass', () => {
    const t = new IdentityTracker(opts);
    ['a', 'b', 'a', 'b'].forEach((id, i) => t.observe(id, i));
    assert.equal(t.active, true);
    assert.equal(t.observe('b', 20_000), null);
    assert.equal(t.observe('a', 25_000), null);
    assert.equal(t.tick(54_999), null);
    assert.deepEqual(t.observe('', 55_000), { kind: 'cleared', identity: 'a' });
    assert.equal(t.active, false);
  });
});
