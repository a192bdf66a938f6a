// Proves the DATA verdict for SMTP/LMTP backend replies and the reply mapping to clients.
// Must not open sockets.
import assert from 'node:assert/strict';
import { catalogueReply, dataVerdict, forwardReply, REPLY } from '../../../src/proxy/smtp/replies.js';
import type { BackendReply } from '../../../src/proxy/smtp/reply-parser.js';

const r = (code: number, text = ''): BackendReply => ({ code, lines: [text] });
const RCPTS = ['a@x.test', 'b@x.test', 'c@x.test'];

describe('smtp replies and the DATA verdict', () => {
  it('splits catalogue replies into code and text', () => {
    assert.deepEqual(catalogueReply('DIRECTORY_UNAVAILABLE'), { code: 454, text: '4.7.0 Temporary authentication failure, please try again later' });
    assert.deepEqual(catalogueReply('AUTH_FAILED'), { code: 535, text: '5.7.8 Authentication credentials invalid' });
  });

  it('passes backend failures on with their own code, but never a 421', () => {
    assert.deepEqual(forwardReply(r(550, '5.1.1 <x>: no such user')), { code: 550, text: '5.1.1 <x>: no such user' });
    assert.deepEqual(forwardReply(r(452, '4.2.2 full')), { code: 452, text: '4.2.2 full' });
    assert.deepEqual(forwardReply(r(421, '4.4.2 bye')), REPLY.backendTemp);
    assert.deepEqual(forwardReply(r(250, 'ok')), REPLY.backendTemp);
  });

  it('LMTP: all accepted → 250', () => {
    const v = dataVerdict([r(250, '2.0.0 ok'), r(250, '2.0.0 ok'), r(250, '2.0.0 ok')], RCPTS);
    assert.equal(v.outcome, 'delivered');
    assert.equal(v.reply.code, 250);
    assert.deepEqual(v.failures, []);
  });

  it('LMTP: any temporary failure → 451 for the whole message, even mixed with successes and permanent failures', () => {
    for (const set of [[250, 451, 250], [452, 452, 452], [250, 550, 421], [550, 450, 550]]) {
      const v = dataVerdict(set.map((c) => r(c, `${c} text`)), RCPTS);
      assert.equal(v.outcome, 'deferred', String(set));
      assert.equal(v.reply.code, 451, String(set));
      assert.match(v.reply.text, /^4\.3\.0 /);
    }
  });

  it('LMTP: all permanent → the first backend reply passed on', () => {
    const v = dataVerdict([r(552, '5.2.2 quota'), r(550, '5.1.1 gone'), r(550, '5.1.1 gone')], RCPTS);
    assert.equal(v.outcome, 'rejected');
    assert.deepEqual(v.reply, { code: 552, text: '5.2.2 quota' });
    assert.equal(v.failures.length, 3);
  });

  it('LMTP: success mixed with permanent failure → 554 naming the failed recipient, never 250', () => {
    const v = dataVerdict([r(250, 'ok'), r(552, '5.2.2 quota'), r(250, 'ok')], RCPTS);
    assert.equal(v.outcome, 'rejected');
    assert.equal(v.reply.code, 554);
    assert.match(v.reply.text, /^5\.0\.0 Delivery failed for 1 of 3 recipients \(b@x\.test: 552 5\.2\.2 quota\)$/);
  });

  it('SMTP delivery: one reply stands for every recipient', () => {
    assert.equal(dataVerdict([r(250, '2.0.0 queued as X')], RCPTS).reply.text, '2.0.0 queued as X');
    assert.equal(dataVerdict([r(451, '4.3.0 later')], RCPTS).reply.code, 451);
    assert.deepEqual(dataVerdict([r(554, '5.7.1 spam')], RCPTS).reply, { code: 554, text: '5.7.1 spam' });
  });

  it('a missing or surplus reply is never a success', () => {
    assert.equal(dataVerdict([], RCPTS).reply.code, 451);
    assert.equal(dataVerdict([r(250), r(250)], RCPTS).reply.code, 451);
  });

  it('a reply that is neither success nor failure defers', () => {
    assert.equal(dataVerdict([r(250), r(354), r(250)], RCPTS).reply.code, 451);
  });
});
