// Proves the one backpressure rule (relay, SMTP DATA): the source pauses only while the destination still holds a write
// over its high-water mark; bytes are written either way. Streams stand in for sockets; no network.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { writeOrPause } from '../../../src/proxy/backpressure.js';

function source() {
  let pauses = 0;
  return { pause: () => { pauses++; }, get pauses() { return pauses; } };
}

describe('writeOrPause', () => {
  it('pauses the source while the destination holds a write over its high-water mark', () => {
    const got: Buffer[] = [];
    const held: Array<() => void> = [];
    const dest = new Writable({ highWaterMark: 4, write(c: Buffer, _e, cb) { got.push(c); held.push(() => cb()); } });
    const src = source();
    assert.equal(writeOrPause(dest, Buffer.from('ab'), src), false);
    assert.equal(src.pauses, 0);
    assert.equal(writeOrPause(dest, Buffer.from('cdefgh'), src), true);
    assert.equal(src.pauses, 1);
    assert.equal(Buffer.concat(got).toString(), 'ab', 'the second write is queued behind the first');
    held.shift()!();
    assert.equal(Buffer.concat(got).toString(), 'abcdefgh', 'and written, not dropped');
  });

  it('does not pause when the write was flushed at once although write() said false', () => {
    // A socket whose write went to the kernel at once may still answer false (and emit 'drain' next).
    const writes: Buffer[] = [];
    const dest = { write: (c: Buffer) => { writes.push(c); return false; }, writableLength: 0 } as unknown as Writable;
    const src = source();
    assert.equal(writeOrPause(dest, Buffer.from('xy'), src), false);
    assert.equal(src.pauses, 0);
    assert.equal(writes.length, 1);
  });
});
