import assert from 'node:assert/strict';
import { flaggedBackends, recordedSwitches, switchesToPush, type MaintenanceSwitch } from '../../../src/tier/maintenance.js';

const on = (at: number): MaintenanceSwitch => ({ enabled: true, at });
const off = (at: number): MaintenanceSwitch => ({ enabled: false, at });

describe('tier maintenance switches (what Redis holds, what an instance pushes back after an outage)', () => {
  it('reads the latest switch per backend; a later "off" outvotes an older "on"', () => {
    const r = { on: { a: '100', b: '100', c: '300' }, off: { b: '200', c: '250', d: '50' } };
    assert.deepEqual([...recordedSwitches(r)].sort(), [['a', on(100)], ['b', off(200)], ['c', on(300)], ['d', off(50)]]);
    assert.deepEqual([...flaggedBackends(recordedSwitches(r))].sort(), ['a', 'c']);
  });

  it('an instance cut off while maintenance was switched off elsewhere does not switch it back on', () => {
    // It heard "on" at 100; another instance switched it off at 200 while this one's link was cut.
    assert.deepEqual(switchesToPush(new Map([['b', on(100)]]), recordedSwitches({ on: {}, off: { b: '200' } })), []);
  });

  it('a restarted Redis (no record at all) gets every switch back, an "off" too', () => {
    assert.deepEqual(switchesToPush(new Map([['b', on(100)], ['c', off(100)]]), new Map()), [['b', on(100)], ['c', off(100)]]);
  });

  it('after Redis restarted empty while one instance was cut off, the newest switch wins whoever pushes first', () => {
    // "on" at 100 everywhere; "off" at 200 through A while B was cut off; Redis then lost everything.
    const a = new Map([['b', off(200)]]);
    const b = new Map([['b', on(100)]]);
    for (const [first, second] of [[a, b], [b, a]] as const) {
      const redis = new Map<string, MaintenanceSwitch>();
      for (const [backend, s] of switchesToPush(first, redis)) redis.set(backend, s);
      for (const [backend, s] of switchesToPush(second, redis)) redis.set(backend, s);
      assert.deepEqual(redis.get('b'), off(200));
    }
    // The other way round: a newer "on" is not undone by an older "off" held by the instance that was cut off.
    const redis = new Map([['b', on(300)]]);
    assert.deepEqual(switchesToPush(new Map([['b', off(200)]]), redis), []);
  });

  it('a switch made here while Redis did not answer goes in when it is newer than what Redis holds', () => {
    assert.deepEqual(switchesToPush(new Map([['b', off(300)]]), recordedSwitches({ on: { b: '100' }, off: {} })), [['b', off(300)]]);
    assert.deepEqual(switchesToPush(new Map([['b', on(300)]]), recordedSwitches({ on: {}, off: { b: '100' } })), [['b', on(300)]]);
    // Older than Redis's, or the same state: nothing to write.
    assert.deepEqual(switchesToPush(new Map([['b', on(100)]]), recordedSwitches({ on: {}, off: { b: '300' } })), []);
    assert.deepEqual(switchesToPush(new Map([['b', on(300)]]), recordedSwitches({ on: { b: '100' }, off: {} })), []);
  });
});
