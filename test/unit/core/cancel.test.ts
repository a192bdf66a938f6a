// Unit tests for core/cancel.ts: the light cancellation used on the login path.
import assert from 'node:assert/strict';
import { Cancel, type CancelSignal } from '../../../src/core/cancel.js';

describe('Cancel', () => {
  it('runs each listener once, in order, and reports aborted', () => {
    const c = new Cancel();
    const seen: string[] = [];
    c.addEventListener('abort', () => seen.push('a'));
    c.addEventListener('abort', () => seen.push('b'), { once: true });
    assert.equal(c.aborted, false);
    c.abort();
    c.abort();
    assert.equal(c.aborted, true);
    assert.deepEqual(seen, ['a', 'b']);
  });

  it('a removed listener is not called; one added after the abort is never called', () => {
    const c = new Cancel();
    let calls = 0;
    const l = () => { calls++; };
    c.addEventListener('abort', l);
    c.removeEventListener('abort', l);
    c.removeEventListener('abort', l); // removing twice is harmless
    c.abort();
    c.addEventListener('abort', l);
    assert.equal(calls, 0);
  });

  it('an AbortSignal is a CancelSignal too (callers may pass either)', () => {
    const ac = new AbortController();
    const s: CancelSignal = ac.signal;
    let called = false;
    s.addEventListener('abort', () => { called = true; }, { once: true });
    ac.abort();
    assert.equal(s.aborted, true);
    assert.equal(called, true);
  });
});
