// Proves the pure backend state machine: hysteresis, maintenance overlay, trickle, adopt, folding.
// Must not use sockets or real time.
import assert from 'node:assert/strict';
import { BackendState, foldStates, isServing, type Outcome } from '../../../src/health/backend-state.js';

const ok: Outcome = { ok: true, source: 'probe' };
const fail: Outcome = { ok: false, source: 'probe', detail: 'ECONNREFUSED' };
const pfail: Outcome = { ok: false, source: 'passive' };
const pok: Outcome = { ok: true, source: 'passive' };

function machine(rise = 2, fall = 2, trickleIntervalMs = 10_000) {
  return new BackendState({ rise, fall, trickleIntervalMs }, 0);
}

describe('health/backend-state', () => {
  it('starts unknown and goes up on the first success', () => {
    const m = machine();
    assert.equal(m.state, 'unknown');
    const t = m.record(ok, 5);
    assert.deepEqual(t && { from: t.from, to: t.to, at: t.at }, { from: 'unknown', to: 'up', at: 5 });
    assert.equal(m.view().since, 5);
  });

  it('goes unknown → suspect → down after fall consecutive failures', () => {
    const m = machine(2, 3);
    assert.equal(m.record(fail, 1)?.to, 'suspect');
    assert.equal(m.record(fail, 2), null);
    const t = m.record(fail, 3);
    assert.equal(t?.from, 'suspect');
    assert.equal(t?.to, 'down');
    assert.match(t!.reason, /probe failed: ECONNREFUSED \(3\/3\)/);
  });

  it('fall = 1 goes straight down', () => {
    const m = machine(1, 1);
    m.record(ok, 1);
    assert.equal(m.record(fail, 2)?.to, 'down');
  });

  it('a success while suspect returns to up (hysteresis: no down without fall failures in a row)', () => {
    const m = machine(2, 2);
    m.record(ok, 1);
    assert.equal(m.record(fail, 2)?.to, 'suspect');
    assert.equal(m.record(ok, 3)?.to, 'up');
    assert.equal(m.record(fail, 4)?.to, 'suspect');
    assert.equal(m.record(ok, 5)?.to, 'up');
    assert.equal(m.state, 'up');
  });

  it('needs rise consecutive successes to come back from down; a failure restarts the count', () => {
    const m = machine(3, 1);
    m.record(fail, 1);
    assert.equal(m.state, 'down');
    assert.equal(m.record(ok, 2), null);
    assert.equal(m.record(ok, 3), null);
    assert.equal(m.record(fail, 4), null);
    assert.equal(m.record(ok, 5), null);
    assert.equal(m.record(ok, 6), null);
    const t = m.record(ok, 7);
    assert.equal(t?.from, 'down');
    assert.equal(t?.to, 'up');
    assert.match(t!.reason, /\(3\/3\)/);
  });

  it('passive failures count like probe failures; one real login that worked brings a down backend up at once', () => {
    const m = machine(2, 2);
    m.record(ok, 1);
    m.record(pfail, 2);
    const t = m.record(fail, 3);
    assert.equal(t?.to, 'down');
    assert.equal(m.record(pok, 4)?.to, 'up', 'no need to wait for rise probes');
    assert.match(m.record(pfail, 6)!.reason, /^passive failed/);
  });

  it('ride-through: between the first good probe and the rise, a login may still ride through (a 5 s failover gap)', () => {
    const m = machine(2, 2);
    m.record(ok, 1000);
    m.record(fail, 2000);
    m.record(fail, 2500);
    assert.equal(m.state, 'down');
    m.record(ok, 7000);
    assert.equal(m.state, 'down');
    assert.equal(m.rideThroughUntil(7000, 12_000), 14_000, 'not refused while the backend answers probes again');
    m.record({ ok: true, source: 'passive' }, 7010);
    assert.equal(m.state, 'up', 'a real login that worked');
  });

  it('ride-through: failingSince starts at the first failure of a run; logins may retry until it + hold, never when hung', () => {
    const m = machine(2, 2);
    m.record(ok, 1000);
    assert.equal(m.view().failingSince, null);
    assert.equal(m.rideThroughUntil(1000, 12_000), 13_000, 'not failing: a full hold from now');
    m.record(pfail, 2000);
    m.record(fail, 3000);
    m.record(fail, 9000);
    assert.equal(m.state, 'down');
    assert.equal(m.view().failingSince, 2000);
    assert.equal(m.rideThroughUntil(9000, 12_000), 14_000);
    assert.equal(m.rideThroughUntil(14_000, 12_000), null, 'failing longer than the hold: fail fast');
    assert.equal(m.rideThroughUntil(9000, 0), null, 'ride-through off');
    m.record(ok, 15_000);
    assert.equal(m.state, 'down', 'one good probe of rise 2');
    assert.equal(m.view().failingSince, 2000, 'the failure run ends when the backend serves again');
    m.record(ok, 15_500);
    assert.equal(m.state, 'up');
    assert.equal(m.view().failingSince, null);
    m.record({ ok: false, source: 'probe', hang: true }, 16_000);
    assert.equal(m.view().hung, false, 'one hang alone can be a server closing its listener on the way down');
    m.record({ ok: false, source: 'passive', hang: true }, 16_050);
    assert.equal(m.view().hung, false);
    m.record({ ok: false, source: 'passive', hang: true }, 16_100);
    assert.equal(m.view().hung, true);
    assert.equal(m.rideThroughUntil(16_101, 12_000), null, 'a hung backend is not ridden through');
    m.record(fail, 16_500);
    assert.equal(m.view().hung, false, 'a refusal ends the hang run');
  });

  it('ride-through needs a backend that has served: one never seen up (a dead host) fails fast', () => {
    const m = machine(2, 2);
    m.record(fail, 1000);
    m.record(fail, 2000);
    assert.equal(m.view().failingSince, null);
    assert.equal(m.rideThroughUntil(2000, 12_000), null);
    const w = machine(2, 2);
    w.adopt('up', false, 0, 5000);
    assert.equal(w.rideThroughUntil(5000, 12_000), 17_000, 'a worker that adopted up rides through its first failure');
  });

  it('maintenance overrides the state while health keeps being tracked underneath', () => {
    const m = machine(1, 1);
    m.record(ok, 1);
    const on = m.setMaintenance(true, 2);
    assert.deepEqual([on?.from, on?.to], ['up', 'maintenance']);
    assert.equal(m.record(fail, 3), null, 'no visible transition in maintenance');
    assert.equal(m.view().health, 'down');
    assert.equal(m.setMaintenance(true, 4), null, 'idempotent');
    const off = m.setMaintenance(false, 5);
    assert.deepEqual([off?.from, off?.to], ['maintenance', 'down']);
  });

  it('trickle: none right after going down, then one per interval', () => {
    const m = machine(2, 1, 1000);
    assert.equal(m.shouldAdmitWhileDown(0), false, 'not down');
    m.record(fail, 100);
    assert.equal(m.shouldAdmitWhileDown(500), false);
    assert.equal(m.shouldAdmitWhileDown(1100), true);
    assert.equal(m.shouldAdmitWhileDown(1101), false);
    assert.equal(m.shouldAdmitWhileDown(2099), false);
    assert.equal(m.shouldAdmitWhileDown(2100), true);
  });

  it('trickle interval 0 disables the trickle', () => {
    const m = machine(2, 1, 0);
    m.record(fail, 1);
    assert.equal(m.shouldAdmitWhileDown(1e9), false);
  });

  it('no trickle while up', () => {
    const m = machine(1, 1, 10);
    m.record(ok, 1);
    assert.equal(m.shouldAdmitWhileDown(1000), false);
  });

  it('adopt takes a state decided elsewhere and reports the transition at its since', () => {
    const m = machine();
    const t = m.adopt('down', false, 42, 50);
    assert.deepEqual([t?.from, t?.to, t?.at], ['unknown', 'down', 42]);
    assert.equal(m.view().since, 42);
    assert.equal(m.adopt('down', false, 42, 60), null);
    assert.equal(m.shouldAdmitWhileDown(50 + 9_999), false);
    assert.equal(m.shouldAdmitWhileDown(50 + 10_000), true);
    assert.equal(m.adopt('up', true, 70, 70)?.to, 'maintenance');
  });

  it('rejects nonsense thresholds', () => {
    assert.throws(() => machine(0, 1), RangeError);
  });

  it('folds endpoint states worst-first and knows what is serving', () => {
    assert.equal(foldStates([]), 'unknown');
    assert.equal(foldStates(['up', 'up']), 'up');
    assert.equal(foldStates(['up', 'unknown']), 'unknown');
    assert.equal(foldStates(['up', 'suspect', 'unknown']), 'suspect');
    assert.equal(foldStates(['up', 'down', 'suspect']), 'down');
    assert.equal(foldStates(['down', 'maintenance']), 'maintenance');
    assert.deepEqual(['unknown', 'up', 'suspect', 'down', 'maintenance'].map((s) => isServing(s as never)), [true, true, true, false, false]);
  });
});
