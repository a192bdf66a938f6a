// Unit tests for choosing backend source addresses: least open connections per endpoint, round-robin among equals, release.
// Must not open sockets.
import assert from 'node:assert/strict';
import { SourceAddressPicker } from '../../../src/proxy/source-address.js';

describe('source address picker', () => {
  const srcs = ['127.0.0.2', '127.0.0.3'];

  it('no sourceAddresses: no lease (the OS chooses)', () => {
    assert.equal(new SourceAddressPicker().pick('b:143', []), undefined);
  });

  it('alternates between equally used sources and prefers the least used', () => {
    const p = new SourceAddressPicker();
    const a = p.pick('b:143', srcs)!; const b = p.pick('b:143', srcs)!;
    assert.deepEqual([a.address, b.address], ['127.0.0.2', '127.0.0.3']);
    const c = p.pick('b:143', srcs)!;
    assert.equal(c.address, '127.0.0.2');
    // .2 has two open, .3 one: after .3's closes, .3 (0) is still least used.
    b.release();
    assert.equal(p.pick('b:143', srcs)!.address, '127.0.0.3');
    assert.equal(p.count('b:143', '127.0.0.2'), 2);
  });

  it('counts per endpoint; release is idempotent', () => {
    const p = new SourceAddressPicker();
    const a = p.pick('b:143', srcs)!;
    assert.equal(p.pick('b:110', srcs)!.address, '127.0.0.2', 'another endpoint has its own counts and turn');
    a.release(); a.release();
    assert.equal(p.count('b:143', '127.0.0.2'), 0);
    const many = Array.from({ length: 1000 }, () => p.pick('c:143', srcs)!);
    assert.equal(p.count('c:143', '127.0.0.2'), 500);
    assert.equal(p.count('c:143', '127.0.0.3'), 500);
    for (const l of many) l.release();
    assert.equal(p.count('c:143', '127.0.0.3'), 0);
  });
});
