// Proves the pure parts of the LMTP front-end fan-out: one client reply per recipient from LMTP or SMTP backend replies (never a false
// success), and the DATA tee (every branch gets every byte; the source waits for the slowest branch).
// Must not open sockets.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { SMTPServerDataStream } from 'smtp-server';
import { partialRecipientReplies, perRecipientReplies, REPLY } from '../../../src/proxy/smtp/replies.js';
import { teeDataStream } from '../../../src/proxy/smtp/data-tee.js';
import { relayData, type BackendLink } from '../../../src/proxy/smtp/transaction.js';
import { ProxyError } from '../../../src/errors.js';

const r = (code: number, text: string) => ({ code, lines: [text] });

describe('LMTP fan-out', () => {
  it('maps LMTP replies one to one and an SMTP reply to every recipient; missing replies are deferred', () => {
    assert.deepEqual(perRecipientReplies([r(250, '2.0.0 <a> Saved'), r(552, '5.2.2 <b> Mailbox full')], ['a', 'b']), [
      { code: 250, text: '2.0.0 <a> Saved' },
      { code: 552, text: '5.2.2 <b> Mailbox full' },
    ]);
    assert.deepEqual(perRecipientReplies([r(451, '4.3.0 later')], ['a', 'b']).map((x) => x.code), [451, 451]);
    assert.deepEqual(perRecipientReplies([r(250, '2.0.0 ok')], ['a', 'b']).map((x) => x.code), [250, 250]);
    assert.deepEqual(perRecipientReplies([r(250, '2.0.0 ok')], ['a', 'b', 'c']).map((x) => x.code), [250, 250, 250]);
    assert.deepEqual(perRecipientReplies([r(250, 'x'), r(250, 'y')], ['a', 'b', 'c'])[2], REPLY.backendTemp);
    // A 421 or a reply that is neither success nor failure is never passed on as success.
    assert.deepEqual(perRecipientReplies([r(421, 'bye'), r(354, '?')], ['a', 'b']), [REPLY.backendTemp, REPLY.backendTemp]);
  });

  it('an LMTP backend that fails between its replies: the recipients it answered keep their reply, the rest are deferred', async () => {
    const source = new PassThrough() as unknown as SMTPServerDataStream & PassThrough;
    Object.assign(source, { byteLength: 0, sizeExceeded: false });
    // The backend's side of DATA: 354, the message, then a reply for the first recipient and the connection is gone.
    const pending = [r(250, '2.0.0 <a> Saved')];
    const client = {
      lmtp: true,
      alive: true,
      command: async () => r(354, 'go'),
      sendData: (stream: PassThrough) => new Promise<number>((resolve) => { stream.resume(); stream.on('end', () => resolve(3)); }),
      read: async () => {
        const next = pending.shift();
        if (!next) throw new ProxyError('BACKEND_UNAVAILABLE', 'connection closed');
        return next;
      },
      destroy: () => undefined,
    };
    source.end('x\r\n');
    const res = await relayData({ client, route: {} } as unknown as BackendLink, source, { prefix: null, recipients: ['a', 'b', 'c'], commandTimeoutMs: 1000, dataTimeoutMs: 1000 });
    assert.equal(res.verdict.outcome, 'deferred');
    assert.deepEqual(res.partial?.map((x) => x.code), [250], 'the reply read before the failure is kept');
    assert.deepEqual(partialRecipientReplies(res.partial!, ['a', 'b', 'c'], res.verdict.reply), [{ code: 250, text: '2.0.0 <a> Saved' }, REPLY.backendTemp, REPLY.backendTemp]);
    // One partial reply is never taken for every recipient (an SMTP backend's single reply is): no false success.
    assert.deepEqual(partialRecipientReplies([r(250, 'ok')], ['a', 'b'], REPLY.backendTemp).map((x) => x.code), [250, 451]);
    assert.deepEqual(partialRecipientReplies([r(550, '5.1.1 <a> gone'), r(250, 'ok')], ['a', 'b', 'c'], REPLY.backendTemp).map((x) => x.code), [550, 250, 451]);
  });

  it('tees one DATA stream to several branches with backpressure', async () => {
    const source = new PassThrough() as unknown as SMTPServerDataStream & PassThrough;
    Object.assign(source, { byteLength: 0, sizeExceeded: false });
    const [a, b] = teeDataStream(source, 2) as unknown as [PassThrough & SMTPServerDataStream, PassThrough & SMTPServerDataStream];
    const chunks = Array.from({ length: 64 }, (_x, i) => Buffer.alloc(4096, i));
    const collect = (s: PassThrough, slow: boolean) => new Promise<Buffer>((resolve) => {
      const got: Buffer[] = [];
      s.on('data', (c: Buffer) => {
        got.push(c);
        if (slow) { s.pause(); setTimeout(() => s.resume(), 1); }
      });
      s.on('end', () => resolve(Buffer.concat(got)));
    });
    const [ga, gb] = [collect(a, false), collect(b, true)];
    let paused = false;
    for (const c of chunks) {
      source.write(c);
      if (source.isPaused()) paused = true;
    }
    source.end();
    const want = Buffer.concat(chunks);
    assert.ok((await ga).equals(want));
    assert.ok((await gb).equals(want));
    assert.ok(paused, 'the slow branch paused the source');
    assert.equal(b.byteLength, source.byteLength);
    assert.equal(teeDataStream(source, 1)[0], source, 'one backend: the stream itself');
  });
});
