// Proves spreading backend-down goodbyes over a window and the per-backend session count.
// Must not use real time.
import assert from 'node:assert/strict';
import { ProxyError } from '../../../src/errors.js';
import { countSessionsByBackend, kickDelays, kickSpread } from '../../../src/ops/kick.js';
import { SessionRegistry, type SessionInfo } from '../../../src/proxy/sessions.js';
import { FakeClock } from '../health/fake-clock.js';

function registry(specs: Array<Partial<SessionInfo> & { id: string }>) {
  const reg = new SessionRegistry();
  const kicked: Array<{ id: string; code: string; at: number }> = [];
  const clock = new FakeClock();
  for (const s of specs) {
    const info: SessionInfo = { protocol: 'imap', client: '127.0.0.1', phase: 'relay', startedAt: 0, ...s };
    reg.add({ info, kick: (e) => { kicked.push({ id: info.id, code: e.code, at: clock.now() }); reg.remove(info.id); } });
  }
  return { reg, kicked, clock };
}

describe('health/kick', () => {
  it('kickDelays spaces n kicks evenly over the window, first at once', () => {
    assert.deepEqual(kickDelays(0, 1000), []);
    assert.deepEqual(kickDelays(1, 1000), [0]);
    assert.deepEqual(kickDelays(4, 1000), [0, 250, 500, 750]);
    assert.deepEqual(kickDelays(3, 0), [0, 0, 0]);
  });

  it('notIdentity: only sessions logged in to another node than the one answering now (sessions without an identity stay)', async () => {
    const { reg, kicked, clock } = registry([
      { id: 'old1', backend: 'a', backendIdentity: 'node A' }, { id: 'old2', backend: 'a', backendIdentity: 'node A' },
      { id: 'new', backend: 'a', backendIdentity: 'node B' }, { id: 'unknown', backend: 'a' }, { id: 'other', backend: 'b', backendIdentity: 'node A' },
    ]);
    const plan = kickSpread(reg, { backend: 'a', protocol: 'imap', notIdentity: 'node B' }, new ProxyError('BACKEND_DOWN'), 0, clock, () => 0);
    await plan.done;
    assert.deepEqual(kicked.map((k) => k.id).sort(), ['old1', 'old2']);
  });

  it('kicks only relayed sessions of that backend (and protocol), spread over the window', async () => {
    const { reg, kicked, clock } = registry([
      { id: '1', backend: 'a' }, { id: '2', backend: 'a' }, { id: '3', backend: 'a' }, { id: '4', backend: 'a' },
      { id: '5', backend: 'b' }, { id: '6', backend: 'a', phase: 'login' }, { id: '7', backend: 'a', protocol: 'pop3' },
    ]);
    const start = clock.now();
    const plan = kickSpread(reg, { backend: 'a', protocol: 'imap' }, new ProxyError('BACKEND_DOWN'), 1000, clock, () => 0);
    assert.equal(plan.count, 4);
    assert.equal(kicked.length, 1, 'first one at once');
    await clock.advance(1000);
    await plan.done;
    assert.deepEqual(kicked.map((k) => k.id).sort(), ['1', '2', '3', '4']);
    assert.deepEqual(kicked.map((k) => k.at - start), [0, 250, 500, 750]);
    assert.ok(kicked.every((k) => k.code === 'BACKEND_DOWN'));
    assert.deepEqual(reg.list().map((s) => s.info.id).sort(), ['5', '6', '7']);
  });

  it('without a protocol filter kicks every protocol; cancel stops the rest', async () => {
    const { reg, kicked, clock } = registry([{ id: '1', backend: 'a' }, { id: '2', backend: 'a', protocol: 'pop3' }, { id: '3', backend: 'a' }]);
    const plan = kickSpread(reg, { backend: 'a' }, new ProxyError('BACKEND_DOWN'), 900, clock);
    assert.equal(plan.count, 3);
    plan.cancel();
    await plan.done;
    await clock.advance(1000);
    assert.equal(kicked.length, 1);
  });

  it('nothing to kick resolves at once; a throwing kick is ignored', async () => {
    const { reg, clock } = registry([]);
    const plan = kickSpread(reg, { backend: 'a' }, new ProxyError('BACKEND_DOWN'), 1000, clock);
    assert.equal(plan.count, 0);
    await plan.done;
    const r2 = new SessionRegistry();
    r2.add({ info: { id: 'x', protocol: 'imap', client: 'c', phase: 'relay', startedAt: 0, backend: 'a' }, kick: () => { throw new Error('closed'); } });
    const p2 = kickSpread(r2, { backend: 'a' }, new ProxyError('BACKEND_DOWN'), 0, clock);
    await p2.done;
  });

  it('counts sessions per backend', () => {
    const { reg } = registry([{ id: '1', backend: 'a' }, { id: '2', backend: 'a' }, { id: '3', backend: 'b' }, { id: '4' }]);
    assert.deepEqual(countSessionsByBackend(reg), { a: 2, b: 1 });
  });
});
