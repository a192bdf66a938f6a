// Proves the per-backend cap on backend connection attempts: slots up to the cap, a FIFO queue bounded in length and in
// time, refusals as BACKEND_BUSY, a leaving client's place given up, whether another attempt was greeted lately; and in
// the pipeline, that a backend greeting none of our attempts is reported as hung. Fake clock and in-memory sockets; must not open sockets.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendGate } from '../../../src/health/gate.js';
import { Cancel } from '../../../src/core/cancel.js';
import { isProxyError } from '../../../src/errors.js';
import { BackendLimiter, type AttemptLimits, type AttemptSlot } from '../../../src/proxy/backend-limit.js';
import { ProtocolService } from '../../../src/proxy/session.js';
import { imapModule } from '../../../src/proxy/imap/index.js';
import { FakeClock } from '../health/fake-clock.js';
import { PORTS, accepted, fakeDialer, handlerDeps, socketPair, testConfig, type Behaviour } from './fakes.js';

const codeOf = (e: unknown): string => (isProxyError(e) ? e.code : String(e));

function limiter(limits: AttemptLimits) {
  const clock = new FakeClock();
  return { clock, lim: new BackendLimiter(() => limits, clock) };
}

describe('BackendLimiter (per-backend cap on attempts in flight)', () => {
  it('grants up to the cap at once, queues the rest and hands freed slots on in arrival order', async () => {
    const { clock, lim } = limiter({ maxInFlightPerBackend: 2, maxQueuedPerBackend: 10 });
    const a = await lim.acquire('b1', 1000);
    const b = await lim.acquire('b1', 1000);
    const order: string[] = [];
    const c = lim.acquire('b1', 1000).then((s) => { order.push('c'); return s; });
    const d = lim.acquire('b1', 1000).then((s) => { order.push('d'); return s; });
    // Another backend has its own lane.
    const other = await lim.acquire('b2', 1000);
    await clock.advance(0);
    assert.deepEqual([lim.inFlight('b1'), lim.waiting('b1'), order], [2, 2, []]);
    a.release();
    a.release(); // idempotent
    await clock.advance(0);
    assert.deepEqual([lim.inFlight('b1'), lim.waiting('b1'), order], [2, 1, ['c']]);
    b.release();
    await clock.advance(0);
    assert.deepEqual(order, ['c', 'd']);
    (await c).release();
    (await d).release();
    other.release();
    assert.deepEqual([lim.inFlight('b1'), lim.waiting('b1'), lim.inFlight('b2')], [0, 0, 0]);
  });

  it('othersGreetedWithin: another attempt at the same backend greeted within the window (not this one, not another backend)', async () => {
    const { clock, lim } = limiter({ maxInFlightPerBackend: 4, maxQueuedPerBackend: 10 });
    const a = await lim.acquire('b1', 1000);
    const b = await lim.acquire('b1', 1000);
    const elsewhere = await lim.acquire('b2', 1000);
    assert.equal(a.othersGreetedWithin(2000), false, 'nobody greeted yet');
    elsewhere.greeted();
    assert.equal(a.othersGreetedWithin(2000), false, 'a greeting at another backend says nothing about this one');
    b.greeted();
    assert.equal(a.othersGreetedWithin(2000), true);
    assert.equal(b.othersGreetedWithin(2000), false, 'its own greeting is not another\'s');
    await clock.advance(2000);
    assert.equal(a.othersGreetedWithin(2000), false, 'the window has passed');
    for (const s of [a, b, elsewhere]) s.release();
  });

  it('a full queue and a wait past the login\'s own deadline are refused with BACKEND_BUSY (the temporary error)', async () => {
    const { clock, lim } = limiter({ maxInFlightPerBackend: 1, maxQueuedPerBackend: 1 });
    const held = await lim.acquire('b1', 1000);
    const waiting = lim.acquire('b1', 500);
    await assert.rejects(lim.acquire('b1', 500), (e) => codeOf(e) === 'BACKEND_BUSY', 'queue full: refused at once');
    let settled = false;
    const outcome = waiting.then(() => 'granted', (e) => codeOf(e));
    void outcome.then(() => { settled = true; });
    await clock.advance(499);
    assert.equal(settled, false);
    await clock.advance(1);
    assert.equal(await outcome, 'BACKEND_BUSY');
    assert.equal(lim.waiting('b1'), 0);
    held.release();
  });

  it('a client that leaves while waiting gives up its place (CLIENT_GONE) and the next waiter gets the slot', async () => {
    const { clock, lim } = limiter({ maxInFlightPerBackend: 1, maxQueuedPerBackend: 5 });
    const held = await lim.acquire('b1', 1000);
    const cancel = new Cancel();
    const leaving = lim.acquire('b1', 1000, cancel).then(() => 'granted', (e) => codeOf(e));
    const next = lim.acquire('b1', 1000);
    cancel.abort();
    assert.equal(await leaving, 'CLIENT_GONE');
    held.release();
    await clock.advance(0);
    const slot: AttemptSlot = await next;
    assert.equal(lim.inFlight('b1'), 1);
    slot.release();
  });

  it('0 means no cap; a queue of 0 refuses at once when the cap is reached', async () => {
    const open = limiter({ maxInFlightPerBackend: 0, maxQueuedPerBackend: 0 });
    const many = await Promise.all(Array.from({ length: 50 }, () => open.lim.acquire('b1', 10)));
    assert.equal(open.lim.inFlight('b1'), 50, 'in-flight attempts are still counted without a cap');
    for (const s of many) s.release();
    const none = limiter({ maxInFlightPerBackend: 1, maxQueuedPerBackend: 0 });
    const held = await none.lim.acquire('b1', 1000);
    await assert.rejects(none.lim.acquire('b1', 1000), (e) => codeOf(e) === 'BACKEND_BUSY');
    held.release();
  });
});

describe('greeting timeouts under our own load (backend-session pipeline)', () => {
  /** Two IMAP logins at a backend that accepts and never greets; cap 1 or more. */
  async function twoLogins(cap: number) {
    const clock = new FakeClock();
    const config = testConfig({ backendLogin: { backendLoginBudgetMs: 10_000, connectTimeoutMs: 1000, greetingTimeoutMs: 2000, maxInFlightPerBackend: cap } });
    const byPort: Record<number, Behaviour> = { [PORTS.imap]: { kind: 'silent' } };
    const reports: string[] = [];
    const gate: BackendGate = { admit: (r: Route) => r, report: (_r, o) => { reports.push(o); } };
    const { dial } = fakeDialer(byPort);
    const deps = { ...handlerDeps(config, dial, clock, gate), limiter: new BackendLimiter(() => config.backendLogin, clock) };
    const service = new ProtocolService({ ...deps, module: imapModule });
    const clients = [socketPair(), socketPair()].map(([client, server]) => {
      client.collect();
      service.handle(server.asSocket(), accepted('imap'));
      return client;
    });
    await clock.advance(0);
    for (const c of clients) c.write('a1 LOGIN alice secret\r\n');
    await clock.advance(0);
    return { clock, reports, clients };
  }

  it('a backend that greets none of our attempts is a hang for health, at once or one after the other under a cap of 1', async () => {
    // (A backend that greeted another attempt within greetingTimeoutMs is busy, not hung: waited for, and not reported,
    // through othersGreetedWithin, proven above and against real Dovecot in backend-herd.)
    const together = await twoLogins(16);
    await together.clock.advance(2000);
    assert.ok(together.clients.every((c) => /a1 NO \[UNAVAILABLE\]/.test(c.text)), 'both logins failed with the temporary error');
    assert.deepEqual(together.reports, ['hang', 'hang'], 'silent at once: a stopped backend is detected by real logins too');

    const alone = await twoLogins(1);
    await alone.clock.advance(2000);
    assert.deepEqual(alone.reports, ['hang'], 'the first, alone at the backend, is a hang');
    await alone.clock.advance(2000);
    assert.deepEqual(alone.reports, ['hang', 'hang'], 'the second waited for its slot, then was alone too');
  });
});
