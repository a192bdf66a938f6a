import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { LineBatch, createLogger, isoTime, scrubSecrets } from '../../../src/log.js';

function capture(): { stream: Writable; lines: () => string[] } {
  const chunks: string[] = [];
  const stream = new Writable({ write(c: Buffer, _e, cb) { chunks.push(c.toString()); cb(); } });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean) };
}

describe('log: secrets never reach a line', () => {
  it('top-level and nested secret keys are censored, everything else is kept', () => {
    const { stream, lines } = capture();
    const log = createLogger('info', stream);
    log.info({ user: 'alice', password: 's3cret-1', credentials: { user: 'alice', password: 's3cret-2' }, ldap: { bindPassword: 's3cret-3', url: 'ldap://x' }, authorization: 'Bearer s3cret-4', a: { b: { token: 's3cret-5' } } }, 'login');
    log.child({ masterPassword: 's3cret-6', conn: 'c1' }).info({ pass: 's3cret-7' }, 'child');
    const out = lines().join('\n');
    for (let i = 1; i <= 7; i++) assert.ok(!out.includes(`s3cret-${i}`), `secret ${i} logged: ${out}`);
    const first = JSON.parse(lines()[0]!) as Record<string, Record<string, unknown> | string>;
    assert.equal(first['password'], '[redacted]');
    assert.deepEqual(first['credentials'], { user: 'alice', password: '[redacted]' });
    assert.deepEqual(first['ldap'], { bindPassword: '[redacted]', url: 'ldap://x' });
    assert.equal(first['user'], 'alice');
    const second = JSON.parse(lines()[1]!) as Record<string, unknown>;
    assert.equal(second['masterPassword'], '[redacted]');
    assert.equal(second['conn'], 'c1');
  });

  it('an error holding a secret keeps its type, message and stack in the line', () => {
    const { stream, lines } = capture();
    const log = createLogger('info', stream);
    class DirectoryError extends Error {}
    const err = Object.assign(new DirectoryError('bind rejected'), { bindPassword: 's3cret-8' });
    log.error({ err }, 'failed');
    const out = lines().join('\n');
    assert.ok(!out.includes('s3cret-8'), out);
    const e = (JSON.parse(lines()[0]!) as { err: Record<string, unknown> }).err;
    assert.equal(e['type'], 'DirectoryError');
    assert.equal(e['message'], 'bind rejected');
    assert.match(String(e['stack']), /bind rejected/);
    assert.equal(e['bindPassword'], '[redacted]');
    assert.equal(err.bindPassword, 's3cret-8', 'the caller\'s error is not changed');
  });

  it('a record without secrets is passed on as is (no copy), the caller\'s object is never changed', () => {
    const plain = { conn: 'c1', user: 'alice', nested: { ms: 3 } };
    assert.equal(scrubSecrets(plain), plain);
    const secret = { conn: 'c1', nested: { password: 'x' } };
    const scrubbed = scrubSecrets(secret);
    assert.notEqual(scrubbed, secret);
    assert.equal(secret.nested.password, 'x');
    assert.deepEqual(scrubbed, { conn: 'c1', nested: { password: '[redacted]' } });
  });
});

describe('log: lines are batched in front of the stdout stream', () => {
  const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const sink = () => ({ writes: [] as string[], syncs: 0, destroyed: false, write(t: string) { this.writes.push(t); }, flushSync() { this.syncs++; } });

  it('writes one string once minBytes are waiting, in order, and nothing before', () => {
    const out = sink();
    const batch = new LineBatch(out, 20, 60_000);
    try {
      batch.write('{"a":1}\n'); batch.write('{"b":2}\n');
      assert.deepEqual(out.writes, [], 'written before the batch was full');
      batch.write('{"c":3}\n');
      assert.deepEqual(out.writes, ['{"a":1}\n{"b":2}\n{"c":3}\n']);
      assert.equal(batch.pending, 0);
    } finally { batch.stop(); }
  });

  it('the timer writes what waits, and never writes when nothing waits', async () => {
    const out = sink();
    const batch = new LineBatch(out, 4096, 10);
    try {
      await tick(50);
      assert.deepEqual(out.writes, [], 'an idle batch wrote (an empty write and a thread-pool wake-up each time)');
      batch.write('one\n');
      await tick(50);
      assert.deepEqual(out.writes, ['one\n']);
    } finally { batch.stop(); }
  });

  it('flushSync writes what waits and syncs the stream; once the stream has ended it is left alone', () => {
    const out = sink();
    const batch = new LineBatch(out, 4096, 60_000);
    try {
      batch.write('last\n');
      batch.flushSync();
      assert.deepEqual(out.writes, ['last\n']);
      assert.equal(out.syncs, 1);
      out.destroyed = true;
      assert.doesNotThrow(() => batch.flushSync());
      assert.equal(out.syncs, 1, 'a destroyed stream was synced');
      assert.equal(out.writes.length, 1, 'a destroyed stream was written to');
    } finally { batch.stop(); }
  });
});

describe('log: the time field', () => {
  it('is the ISO 8601 UTC text pino\'s isoTime writes, across milliseconds, seconds, days and a clock stepping back', () => {
    const base = Date.UTC(2026, 11, 31, 23, 59, 58, 0);
    const times = [base, base + 1, base + 9, base + 10, base + 99, base + 100, base + 999, base + 1000, base + 1001, base + 2500, base + 2000, base - 1, base - 1000, base + 86_400_000 + 7, 0, 5, 1_000_000_000_123, -1, 253_402_300_800_000, base];
    for (const t of times) assert.equal(isoTime(t), `,"time":"${new Date(t).toISOString()}"`, `at ${t}`);
  });

  it('a logged line carries it', () => {
    const { stream, lines } = capture();
    createLogger('info', stream).info({ a: 1 }, 'x');
    const line = JSON.parse(lines()[0]!) as { time: string };
    assert.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(line.time) - Date.now()) < 60_000);
  });
});
