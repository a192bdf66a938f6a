import assert from 'node:assert/strict';
import { tierVerdict, type Evidence } from '../../../src/tier/verdict.js';

const NOW = 1_000_000;
const ev = (instance: string, health: Evidence['health'], ageMs = 0): Evidence => ({ instance, health, at: NOW - ageMs });
const live = (...ids: string[]) => new Set(ids);

describe('tierVerdict (shared backend view)', () => {
  it('a lone observer decides alone (the others do not probe the backend)', () => {
    assert.deepEqual(tierVerdict([ev('a', 'down')], live('a', 'b', 'c'), 'majority', 10_000, NOW), { down: true, observers: 1, downVotes: 1, needed: 1 });
  });

  it('one instance seeing down while two see up is outvoted (its own network fault)', () => {
    const v = tierVerdict([ev('a', 'down'), ev('b', 'up'), ev('c', 'suspect')], live('a', 'b', 'c'), 'majority', 10_000, NOW);
    assert.deepEqual(v, { down: false, observers: 3, downVotes: 1, needed: 2 });
  });

  it('a majority of observers seeing down decides', () => {
    assert.equal(tierVerdict([ev('a', 'down'), ev('b', 'down'), ev('c', 'up')], live('a', 'b', 'c'), 'majority', 10_000, NOW).down, true);
    // two observers: both must agree
    assert.equal(tierVerdict([ev('a', 'down'), ev('b', 'up')], live('a', 'b'), 'majority', 10_000, NOW).down, false);
    assert.equal(tierVerdict([ev('a', 'down'), ev('b', 'down')], live('a', 'b'), 'majority', 10_000, NOW).down, true);
  });

  it('stale evidence, unknown states and instances that are not live abstain', () => {
    const v = tierVerdict([ev('a', 'down'), ev('b', 'up', 20_000), ev('c', 'unknown'), ev('d', 'up')], live('a', 'b', 'c'), 'majority', 10_000, NOW);
    assert.deepEqual(v, { down: true, observers: 1, downVotes: 1, needed: 1 });
  });

  it('a fixed quorum is not lowered when fewer instances observe', () => {
    assert.equal(tierVerdict([ev('a', 'down')], live('a', 'b'), 2, 10_000, NOW).down, false);
    assert.equal(tierVerdict([ev('a', 'down'), ev('b', 'down'), ev('c', 'up')], live('a', 'b', 'c'), 2, 10_000, NOW).down, true);
  });

  it('no evidence is no verdict; an instance counts once', () => {
    assert.equal(tierVerdict([], live('a'), 'majority', 10_000, NOW).down, false);
    assert.deepEqual(tierVerdict([ev('a', 'down'), ev('a', 'down'), ev('b', 'up'), ev('c', 'up')], live('a', 'b', 'c'), 'majority', 10_000, NOW), { down: false, observers: 3, downVotes: 1, needed: 2 });
  });
});
