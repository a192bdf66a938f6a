// Proves the backend SMTP reply parser: multi-line replies, limits, every byte split.
// Must not open sockets.
import assert from 'node:assert/strict';
import { ReplyParser, parseCapabilities, replyText, type BackendReply } from '../../../src/proxy/smtp/reply-parser.js';
import { isProxyError } from '../../../src/errors.js';

function feedAll(chunks: Buffer[]): BackendReply[] {
  const p = new ReplyParser();
  return chunks.flatMap((c) => p.feed(c));
}

/** Every way of cutting `input` in two must give the same replies as feeding it whole. */
function splitEverywhere(input: string): BackendReply[] {
  const buf = Buffer.from(input, 'latin1');
  const whole = feedAll([buf]);
  for (let i = 0; i <= buf.length; i++) {
    assert.deepEqual(feedAll([buf.subarray(0, i), buf.subarray(i)]), whole, `split at ${i}`);
  }
  // And byte by byte.
  assert.deepEqual(feedAll([...buf].map((b) => Buffer.from([b]))), whole, 'byte by byte');
  return whole;
}

describe('smtp reply parser', () => {
  it('parses single-line replies', () => {
    assert.deepEqual(splitEverywhere('220 mx.example.test ESMTP ready\r\n'), [{ code: 220, lines: ['mx.example.test ESMTP ready'] }]);
  });

  it('parses a multi-line EHLO reply split at every byte offset', () => {
    const input = '250-backend-a.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-XCLIENT ADDR PORT LOGIN\r\n250 8BITMIME\r\n';
    const [r] = splitEverywhere(input);
    assert.equal(r!.code, 250);
    assert.deepEqual(r!.lines, ['backend-a.example.test', 'PIPELINING', 'SIZE 1000', 'XCLIENT ADDR PORT LOGIN', '8BITMIME']);
    const caps = parseCapabilities(r!);
    assert.deepEqual(caps.get('XCLIENT'), ['ADDR', 'PORT', 'LOGIN']);
    assert.deepEqual(caps.get('SIZE'), ['1000']);
    assert.ok(caps.has('PIPELINING'));
    assert.ok(!caps.has('BACKEND-A.EXAMPLE.TEST'));
  });

  it('returns several pipelined replies in order (LMTP per-recipient replies)', () => {
    const input = '250 2.0.0 <alice> Saved\r\n452 4.2.2 <bob> Quota exceeded\r\n550-5.1.1 <carol>\r\n550 5.1.1 unknown\r\n';
    const replies = splitEverywhere(input);
    assert.deepEqual(replies.map((r) => r.code), [250, 452, 550]);
    assert.equal(replyText(replies[2]!), '5.1.1 <carol> 5.1.1 unknown');
  });

  it('accepts a bare code and bare LF line ends', () => {
    assert.deepEqual(splitEverywhere('250\n354 go ahead\n'), [{ code: 250, lines: [''] }, { code: 354, lines: ['go ahead'] }]);
  });

  it('keeps an incomplete reply until its last line arrives', () => {
    const p = new ReplyParser();
    assert.deepEqual(p.feed(Buffer.from('250-one\r\n250-two\r\n')), []);
    assert.ok(p.buffered);
    assert.deepEqual(p.feed(Buffer.from('250 three\r\n')), [{ code: 250, lines: ['one', 'two', 'three'] }]);
    assert.ok(!p.buffered);
  });

  for (const [name, input] of [
    ['garbage', 'hello there\r\n'],
    ['a code change inside a multi-line reply', '250-one\r\n251 two\r\n'],
    ['a 1xx code', '199 what\r\n'],
  ] as const) {
    it(`rejects ${name} with BACKEND_PROTOCOL`, () => {
      assert.throws(() => new ReplyParser().feed(Buffer.from(input)), (e: unknown) => isProxyError(e) && e.code === 'BACKEND_PROTOCOL');
    });
  }

  it('enforces the line limit even when the line arrives in pieces', () => {
    const p = new ReplyParser(100);
    p.feed(Buffer.from(`250 ${'x'.repeat(60)}`));
    assert.throws(() => p.feed(Buffer.from('y'.repeat(60))), (e: unknown) => isProxyError(e) && e.code === 'BACKEND_PROTOCOL');
  });

  it('sanitises reply text for clients and logs', () => {
    assert.equal(replyText({ code: 550, lines: ['5.7.1 bad\x01\x7fthing'] }), '5.7.1 bad??thing');
  });
});
