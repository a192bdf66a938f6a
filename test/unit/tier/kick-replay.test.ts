import assert from 'node:assert/strict';
import { KICK_FIELD, kickFilter, kickVerdict, nextStreamId, parseKickEntry, PendingKicks, SeenKicks, type KickRecord } from '../../../src/tier/kick-replay.js';
import { SessionRegistry } from '../../../src/proxy/sessions.js';
import { ProxyError } from '../../../src/errors.js';
import { tierSchema } from '../../../src/config/tier-schema.js';

const kick = (id: string, at: number, extra: Partial<KickRecord> = {}): KickRecord => ({ id, from: 'mx2#1', at, user: 'alice', ...extra });

describe('tier kicks replayed late (pure parts)', () => {
  it('steps past a stream id without an exclusive range ', () => {
    assert.equal(nextStreamId('1700000000000-0'), '1700000000000-1');
    assert.equal(nextStreamId('1700000000000-18446744073709551615'), '1700000000000-18446744073709551616');
    assert.equal(nextStreamId('0-0'), '0-1');
    assert.equal(nextStreamId('garbage'), '0-1');
  });

  it('reads only well-formed stream entries, never trusting their text', () => {
    const good = kick('a1', 5, { backend: 'b1' });
    assert.deepEqual(parseKickEntry([KICK_FIELD, JSON.stringify(good)]), good);
    assert.deepEqual(parseKickEntry(['x', '1', KICK_FIELD, JSON.stringify({ id: 'a', from: 'f', at: 1, backend: 'b' })]), { id: 'a', from: 'f', at: 1, backend: 'b' });
    for (const bad of [[], ['x', '{}'], [KICK_FIELD, 'not json'], [KICK_FIELD, '{"id":"a","from":"f","at":1}'], [KICK_FIELD, JSON.stringify({ ...good, extra: 1 })],
      [KICK_FIELD, JSON.stringify({ ...good, at: -1 })], [KICK_FIELD, JSON.stringify({ ...good, user: 'x'.repeat(513) })], [KICK_FIELD, JSON.stringify({ ...good, id: 'i'.repeat(65) })]]) {
      assert.equal(parseKickEntry(bad), undefined, JSON.stringify(bad).slice(0, 80));
    }
  });

  it('keeps at most maxPending kicks (the oldest go first) and none past maxAgeMs', () => {
    const p = new PendingKicks(2, 1000);
    assert.deepEqual(p.add(kick('1', 100)), []);
    assert.deepEqual(p.add(kick('2', 200)), []);
    assert.deepEqual(p.add(kick('3', 300)).map((k) => k.id), ['1'], 'the oldest is pushed out');
    assert.equal(p.size, 2);
    assert.ok(p.has('3') && !p.has('1'));
    assert.deepEqual(p.expire(1250).map((k) => k.id), ['2'], '1050 ms old');
    assert.equal(p.first()?.record.id, '3');
    assert.equal(p.first()?.failed, false);
    p.markFailed();
    assert.equal(p.shift()?.failed, true, 'a kick that waited counts as late');
    assert.equal(p.size, 0);
  });

  it('remembers the newest ids applied, bounded', () => {
    const s = new SeenKicks(2);
    assert.equal(s.add('a'), true);
    assert.equal(s.add('a'), false, 'applied once');
    s.add('b');
    s.add('c');
    assert.ok(!s.has('a') && s.has('b') && s.has('c'));
  });

  it('applies a kick once, not its own, not past maxAgeMs, not from before this instance started', () => {
    const seen = new SeenKicks(10);
    const o = { self: 'mx1#1', startedAt: 1000, now: 5000, maxAgeMs: 3000, seen };
    assert.equal(kickVerdict(kick('k1', 4000), o), 'apply');
    seen.add('k1');
    assert.equal(kickVerdict(kick('k1', 4000), o), 'seen');
    assert.equal(kickVerdict(kick('k2', 4000, { from: 'mx1#1' }), o), 'own');
    assert.equal(kickVerdict(kick('k3', 1500), o), 'expired', '3500 ms late');
    assert.equal(kickVerdict(kick('k4', 999), o), 'before-start');
  });

  it('a replayed kick closes the sessions that started before it and spares one that started after', () => {
    const reg = new SessionRegistry();
    const closed: string[] = [];
    const add = (id: string, user: string, startedAt: number, backend = 'b1') =>
      reg.add({ info: { id, protocol: 'imap', client: '192.0.2.1:1', user, backend, phase: 'relay', startedAt }, kick: (e) => { closed.push(`${id}:${e.code}`); reg.remove(id); } });
    add('old', 'alice', 1000);
    add('same-ms', 'alice', 2000);
    add('new', 'alice', 2001);
    add('other', 'bob', 1000);
    add('old-b2', 'alice', 1000, 'b2');
    assert.deepEqual(kickFilter(kick('k', 2000)), { user: 'alice', startedBefore: 2000 });
    assert.equal(reg.kick(kickFilter(kick('k', 2000, { backend: 'b1' })), new ProxyError('ADMIN_KICK')), 2);
    assert.deepEqual(closed.sort(), ['old:ADMIN_KICK', 'same-ms:ADMIN_KICK']);
    assert.deepEqual(reg.list().map((s) => s.info.id).sort(), ['new', 'old-b2', 'other']);
  });

  it('documents its bounds with defaults in the tier schema', () => {
    const c = tierSchema.parse({ redis: { host: 'r' } }).kicks;
    assert.deepEqual(c, { maxPending: 1000, maxAgeMs: 600_000, streamLength: 1000, checkIntervalMs: 5000 });
    assert.throws(() => tierSchema.parse({ redis: { host: 'r' }, kicks: { maxPending: 0 } }));
  });
});
