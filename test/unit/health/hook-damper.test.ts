// Proves the hook damping rules (pure): settled changes only, flap start and end events, maintenance always told,
// flap detection off with maxTransitions 0. Must not run hooks or use clocks.
import assert from 'node:assert/strict';
import type { EffectiveState } from '../../../src/health/backend-state.js';
import { HookDamper, type DampedEvent } from '../../../src/health/hook-damper.js';

const OPTS = { maxTransitions: 4, windowMs: 10_000, quietMs: 5000 };

function feed(d: HookDamper, steps: Array<[EffectiveState, EffectiveState, number]>): string[] {
  const out: DampedEvent[] = [];
  for (const [from, to, at] of steps) out.push(...d.observe({ backend: 'a', from, to, at, reason: 'r' }));
  return out.map((e) => `${e.from}>${e.to}`);
}

describe('health/HookDamper', () => {
  it('suspect is never told: a blip that returns is nothing, one that ends down is up>down', () => {
    const d = new HookDamper(OPTS);
    assert.deepEqual(feed(d, [['unknown', 'up', 0], ['up', 'suspect', 1], ['suspect', 'up', 2], ['up', 'suspect', 3], ['suspect', 'down', 4], ['down', 'up', 5]]), ['unknown>up', 'up>down', 'down>up']);
  });

  it('maxTransitions settled changes within windowMs start a flap (one event), then nothing until quietMs without change', () => {
    const d = new HookDamper(OPTS);
    assert.deepEqual(feed(d, [['unknown', 'up', 0], ['up', 'down', 1000], ['down', 'up', 2000], ['up', 'down', 3000]]), ['unknown>up', 'up>down', 'down>up', 'up>down'], 'the first start (from unknown) does not count');
    assert.deepEqual(feed(d, [['down', 'up', 4000]]), ['down>flapping']);
    assert.equal(d.isFlapping('a'), true);
    assert.deepEqual(feed(d, [['up', 'down', 5000], ['down', 'up', 6000]]), []);
    assert.deepEqual(d.settle(10_999), [], 'not quiet long enough');
    const end = d.settle(11_000);
    assert.deepEqual(end.map((e) => `${e.from}>${e.to}`), ['flapping>up']);
    assert.match(end[0]!.reason, /2 changes not run as hooks/);
    assert.equal(d.isFlapping('a'), false);
    assert.deepEqual(feed(d, [['up', 'down', 12_000]]), ['up>down'], 'counting starts afresh');
  });

  it('changes spread wider than windowMs never flap; maxTransitions 0 turns detection off', () => {
    const slow = new HookDamper(OPTS);
    const steps: Array<[EffectiveState, EffectiveState, number]> = [];
    for (let i = 0; i < 10; i++) steps.push(i % 2 ? ['down', 'up', i * 4000] : ['up', 'down', i * 4000]);
    assert.equal(feed(slow, steps).length, 10);
    const off = new HookDamper({ ...OPTS, maxTransitions: 0 });
    const fast = steps.map(([f, t, at]): [EffectiveState, EffectiveState, number] => [f, t, at / 100]);
    assert.equal(feed(off, fast).length, 10);
  });

  it('maintenance on and off are always told, also while flapping, and do not count as changes', () => {
    const d = new HookDamper(OPTS);
    assert.deepEqual(feed(d, [['up', 'maintenance', 0], ['maintenance', 'up', 1], ['up', 'maintenance', 2], ['maintenance', 'up', 3], ['up', 'maintenance', 4]]), ['up>maintenance', 'maintenance>up', 'up>maintenance', 'maintenance>up', 'up>maintenance']);
    assert.equal(d.isFlapping('a'), false);
  });
});
