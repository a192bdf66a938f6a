// Proves the POP3 line parser and its limits, with every input split at every byte offset.
// Must not open sockets.
import assert from 'node:assert/strict';
import { Pop3LineParser, type Pop3LineResult } from '../../../src/proxy/pop3/parser.js';

/** Feed chunks, pulling every result after each one; returns results and the bytes left. */
function feed(max: number, chunks: Buffer[]): { results: Pop3LineResult[]; rest: string } {
  const p = new Pop3LineParser(max);
  const results: Pop3LineResult[] = [];
  for (const c of chunks) {
    p.push(c);
    for (let r = p.next(); r; r = p.next()) results.push(r);
  }
  return { results, rest: p.takeRemaining().toString('latin1') };
}

/** Same outcome whole, split at every offset, and a byte at a time. */
function expectParse(max: number, input: string, results: Pop3LineResult[], rest = ''): void {
  const buf = Buffer.from(input, 'utf8');
  assert.deepEqual(feed(max, [buf]), { results, rest }, 'whole');
  for (let i = 1; i < buf.length; i++) {
    assert.deepEqual(feed(max, [buf.subarray(0, i), buf.subarray(i)]), { results, rest }, `split at ${i}`);
  }
  assert.deepEqual(feed(max, [...buf].map((b) => Buffer.from([b]))), { results, rest }, 'byte at a time');
}

const line = (l: string): Pop3LineResult => ({ kind: 'line', line: l });
const TOO_LONG: Pop3LineResult = { kind: 'too-long' };

describe('pop3 line parser', () => {
  it('splits CRLF and bare LF lines and keeps a partial line', () => {
    expectParse(512, 'USER a\r\nPASS b c\nCAPA\r\n\r\nQU', [line('USER a'), line('PASS b c'), line('CAPA'), line('')], 'QU');
  });

  it('decodes UTF-8', () => {
    expectParse(512, 'PASS gr\u00fc\u00dfe\r\n', [line('PASS gr\u00fc\u00dfe')]);
  });

  it('accepts a line of exactly the limit and refuses one byte more, once, then reads on', () => {
    const max = 300;
    expectParse(max, `${'a'.repeat(max)}\r\n${'b'.repeat(max + 1)}\r\nNOOP\r\n${'c'.repeat(max + 1)}\nX`, [
      line('a'.repeat(max)), TOO_LONG, line('NOOP'), TOO_LONG,
    ], 'X');
  });

  it('reports an endless line as soon as it passes the limit, without buffering it', () => {
    const p = new Pop3LineParser(256);
    p.push(Buffer.alloc(300, 0x41));
    assert.deepEqual(p.next(), TOO_LONG);
    p.push(Buffer.alloc(10_000, 0x41));
    assert.equal(p.next(), null);
    assert.equal(p.buffered, 0);
    p.push(Buffer.from('AA\r\nCAPA\r\n'));
    assert.deepEqual(p.next(), line('CAPA'));
  });

  it('never frames tighter than RFC 2449 allows (255 octets)', () => {
    expectParse(10, `${'x'.repeat(255)}\r\n`, [line('x'.repeat(255))]);
  });

  it('hands over unread bytes exactly, or discards them', () => {
    const p = new Pop3LineParser(512);
    p.push(Buffer.from('PASS x\r\nSTAT\r\nLI'));
    assert.deepEqual(p.next(), line('PASS x'));
    assert.equal(p.takeRemaining().toString(), 'STAT\r\nLI');
    assert.equal(p.next(), null);
    p.push(Buffer.from('STLS\r\nUSER x\r\n'));
    assert.deepEqual(p.next(), line('STLS'));
    p.discard();
    assert.equal(p.next(), null);
    assert.equal(p.buffered, 0);
  });
});
