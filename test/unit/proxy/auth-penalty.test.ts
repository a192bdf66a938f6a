// Proves the per-address failed-login penalty: doubling up to the cap, per address, reset by success, forgotten after the window.
// Must not sleep; a fake clock drives time.
import assert from 'node:assert/strict';
import { AuthPenalty, PENALTY_WINDOW_MS } from '../../../src/proxy/auth-penalty.js';

describe('failed-login penalty per client address', () => {
  let t = 0;
  const now = () => t;
  beforeEach(() => { t = 1_000_000; });

  it('doubles from the base delay per failure and stops at the cap', () => {
    const p = new AuthPenalty(now);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => p.failure('198.51.100.1', 2000, 15_000)), [2000, 4000, 8000, 15_000, 15_000, 15_000]);
  });

  it('keeps addresses apart', () => {
    const p = new AuthPenalty(now);
    p.failure('198.51.100.1', 100, 1000); p.failure('198.51.100.1', 100, 1000);
    assert.equal(p.failure('198.51.100.2', 100, 1000), 100);
    assert.equal(p.count('198.51.100.1'), 2);
  });

  it('is cleared by a successful login from that address', () => {
    const p = new AuthPenalty(now);
    p.failure('a', 100, 1000); p.failure('a', 100, 1000);
    p.success('a');
    assert.equal(p.failure('a', 100, 1000), 100);
  });

  it('forgets failures older than the window', () => {
    const p = new AuthPenalty(now);
    p.failure('a', 100, 1000); p.failure('a', 100, 1000);
    t += PENALTY_WINDOW_MS + 1;
    assert.equal(p.count('a'), 0);
    assert.equal(p.failure('a', 100, 1000), 100);
  });

  it('gives a fixed delay when the cap is not above the base, and none for a zero base', () => {
    const p = new AuthPenalty(now);
    assert.deepEqual([1, 2, 3].map(() => p.failure('a', 300, 300)), [300, 300, 300]);
    assert.equal(p.failure('b', 0, 15_000), 0);
  });

  it('holds at most maxAddresses entries (bounded memory under address-spraying)', () => {
    const p = new AuthPenalty(now, 100);
    for (let i = 0; i < 1000; i++) p.failure(`10.0.${i >> 8}.${i & 255}`, 1, 2);
    let kept = 0;
    for (let i = 0; i < 1000; i++) if (p.count(`10.0.${i >> 8}.${i & 255}`) > 0) kept++;
    assert.equal(kept, 100);
  });
});
