// Proves the SMTP front-ends' shared handler helpers: the RCPT result label of a refused step and the async handler
// wrapper (an unexpected throw is logged and answered 451, a normal body answers itself). Must not open sockets.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { ProxyError } from '../../../src/errors.js';
import { refusedRcptResult, runHandler } from '../../../src/proxy/smtp/transaction.js';
import { REPLY } from '../../../src/proxy/smtp/replies.js';

describe('SMTP transaction helpers', () => {
  it('labels a refused RCPT by its cause: connection failure, 5xx, 4xx', () => {
    assert.equal(refusedRcptResult({ ok: false, reply: REPLY.backendTemp, error: new ProxyError('BACKEND_UNAVAILABLE', 'gone') }), 'backend_unavailable');
    assert.equal(refusedRcptResult({ ok: false, reply: { code: 550, text: '5.1.1 no such user' } }), 'rejected');
    assert.equal(refusedRcptResult({ ok: false, reply: { code: 452, text: '4.2.2 over quota' } }), 'deferred');
  });

  it('answers an unexpected throw with the temporary error and logs it once', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _e, cb) { lines.push(chunk.toString()); cb(); } }));
    const answers: (Error | null | undefined)[] = [];
    const callback = (err?: Error | null): void => { answers.push(err); };
    runHandler(log, 'rcpt', 'test RCPT failed', callback, async () => { throw new Error('boom'); });
    runHandler(log, 'rcpt', 'never logged', callback, async () => { callback(); });
    await new Promise((r) => setImmediate(r));
    assert.equal(answers.length, 2);
    assert.equal(answers.filter((a) => a === undefined).length, 1);
    const err = answers.find((a) => a instanceof Error) as Error & { responseCode?: number };
    assert.equal(err.responseCode, REPLY.backendTemp.code);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /"phase":"rcpt".*"err":"Error: boom".*test RCPT failed/);
  });
});
