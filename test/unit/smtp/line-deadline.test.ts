// Proves the per-line deadline of SMTP client connections: the clock of a line starts at its first byte, bytes of the
// same line do not restart it, a complete line stops it, and it follows the connection onto another socket.
// Must not open sockets (PassThrough streams) or use real time.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { LineDeadline } from '../../../src/proxy/smtp/line-deadline.js';
import { FakeClock } from '../health/fake-clock.js';

function setup(ms = 1000) {
  const clock = new FakeClock();
  let expired = 0;
  const d = new LineDeadline(ms, clock, () => { expired++; });
  const s = new PassThrough();
  s.resume();
  d.attach(s);
  return { clock, d, s, expired: () => expired };
}

describe('smtp/LineDeadline', () => {
  it('a line trickling in expires once, commandTimeoutMs after its first byte, however often bytes arrive', async () => {
    const t = setup();
    for (let i = 0; i < 9; i++) { t.s.write('N'); await t.clock.advance(100); }
    assert.equal(t.expired(), 0);
    await t.clock.advance(100);
    assert.equal(t.expired(), 1);
    t.s.write('OOP'); await t.clock.advance(5000);
    assert.equal(t.expired(), 1, 'once');
  });

  it('whole lines, with any pause between them, never expire; a new partial line starts its own clock', async () => {
    const t = setup();
    t.s.write('EHLO x\r\n'); await t.clock.advance(5000);
    t.s.write('NOOP\r\nMAIL FROM:<a@'); await t.clock.advance(900);
    t.s.write('b>\r\nRCPT TO:<c@'); await t.clock.advance(900);
    assert.equal(t.expired(), 0, 'the RCPT line started 900 ms ago, not 1800');
    t.s.write('d>\r\n'); await t.clock.advance(5000);
    assert.equal(t.expired(), 0);
  });

  it('attach moves it to the TLS socket: bytes on the old socket no longer count', async () => {
    const t = setup();
    t.s.write('STAR');
    const tls = new PassThrough();
    tls.resume();
    t.d.attach(tls);
    await t.clock.advance(5000);
    assert.equal(t.expired(), 0, 'the partial line of the old socket is forgotten');
    t.s.write('ciphertext'); await t.clock.advance(5000);
    assert.equal(t.expired(), 0);
    tls.write('EHL'); await t.clock.advance(1000);
    assert.equal(t.expired(), 1);
  });
});
