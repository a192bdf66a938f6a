// Proves the shared line + literal framer (IMAP and ManageSieve): commands with literals split at every byte, continuations,
// line and literal limits, skipping a rejected command's in-flight literal, raw lines, quoted strings. Must not open sockets.
import assert from 'node:assert/strict';
import { LiteralFramer, decodeUtf8, literalText, scanQuoted, type FramerOptions, type FrameResult } from '../../../src/proxy/literal-framer.js';
import { splits } from '../imap/helpers.js';

const IMAP: FramerOptions = { maxLineBytes: 40, maxLiteralBytes: 16, synchronising: true };
const SIEVE: FramerOptions = { ...IMAP, synchronising: false };

/** Results as plain text so a whole transcript compares in one assertion. */
function show(r: FrameResult): string {
  if (r.type === 'continue') return '+';
  if (r.type === 'error') return `${r.error}${r.fatal ? '!' : ''} <${r.head.toString('latin1').slice(0, 8)}>`;
  return r.parts.map((p) => ('seg' in p ? `[${p.seg.toString('latin1')}]` : `(${p.lit.toString('latin1')})`)).join('');
}

function frames(options: FramerOptions, chunks: Buffer[]): string[] {
  const f = new LiteralFramer(options);
  const out: string[] = [];
  for (const c of chunks) {
    f.push(c);
    for (let r = f.next(); r; r = f.next()) out.push(show(r));
  }
  return out;
}

function everySplit(options: FramerOptions, input: string, expected: string[]): void {
  for (const chunks of splits(Buffer.from(input, 'latin1'))) assert.deepEqual(frames(options, chunks), expected);
}

describe('LiteralFramer', () => {
  it('frames lines and literals ({n} asks for a continuation, {n+} does not), at every split', () => {
    everySplit(IMAP, 'a1 LOGIN {5}\r\nalice {3+}\r\npw!\r\n\r\na2 NOOP\n', [
      '+',
      '[a1 LOGIN {5}](alice)[ {3+}](pw!)[]',
      '[a2 NOOP]',
    ]);
  });

  it('never asks for a continuation when not synchronising (ManageSieve)', () => {
    everySplit(SIEVE, 'PUTSCRIPT "s" {6}\r\nkeep;\n\r\nNOOP\r\n', ['[PUTSCRIPT "s" {6}](keep;\n)[]', '[NOOP]']);
  });

  it('rejects an over-long line with its head, skips to its end and goes on', () => {
    const long = `t1 NOOP ${'x'.repeat(50)}\r\nt2 NOOP\r\n`;
    everySplit(IMAP, long, ['LINE_TOO_LONG <t1 NOOP >', '[t2 NOOP]']);
    // The limit counts every line of one command together.
    everySplit(IMAP, `t3 X {2}\r\nab ${'y'.repeat(34)}\r\nt4 NOOP\r\n`, ['+', 'LINE_TOO_LONG <t3 X {2}>', '[t4 NOOP]']);
  });

  it('skips the in-flight literal of a rejected command so its bytes are never read as commands', () => {
    const input = `t1 APPEND ${'x'.repeat(40)} {12+}\r\nt9 LOGOUT\r\n\r\nt2 NOOP\r\n`;
    everySplit(IMAP, input, ['LINE_TOO_LONG <t1 APPEN>', '[t2 NOOP]']);
    // A synchronising literal of a rejected IMAP command is not sent (no continuation came), so the next line is a command.
    everySplit(IMAP, `t1 APPEND ${'x'.repeat(40)} {2}\r\nt2 NOOP\r\n`, ['LINE_TOO_LONG <t1 APPEN>', '[t2 NOOP]']);
    // ManageSieve has no continuations: every literal of a rejected line is in flight.
    everySplit(SIEVE, `PUTSCRIPT ${'x'.repeat(40)} {8}\r\nLOGOUT\r\n\r\nNOOP\r\n`, ['LINE_TOO_LONG <PUTSCRIP>', '[NOOP]']);
  });

  it('refuses an over-limit literal: fatal when it is already in flight', () => {
    assert.deepEqual(frames(IMAP, [Buffer.from('t1 APPEND {17}\r\nt2 NOOP\r\n')]), ['LITERAL_TOO_LARGE <t1 APPEN>', '[t2 NOOP]']);
    assert.deepEqual(frames(IMAP, [Buffer.from('t1 APPEND {17+}\r\n')]), ['LITERAL_TOO_LARGE! <t1 APPEN>']);
    assert.deepEqual(frames(SIEVE, [Buffer.from('PUTSCRIPT {17}\r\n')]), ['LITERAL_TOO_LARGE! <PUTSCRIP>']);
    // Absurd sizes do not overflow into small numbers.
    assert.deepEqual(frames(IMAP, [Buffer.from('t1 X {99999999999999999999+}\r\n')]), ['LITERAL_TOO_LARGE! <t1 X {99>']);
    // Literals of one command together may not pass twice the literal limit.
    assert.deepEqual(frames(IMAP, [Buffer.from('t1 X {16+}\r\n' + 'a'.repeat(16) + ' {16+}\r\n' + 'b'.repeat(16) + ' {1+}\r\n')]), [
      'LITERAL_TOO_LARGE! <t1 X {16>',
    ]);
  });

  it('reports a line with no LF past the limit at once, before its end arrives', () => {
    const f = new LiteralFramer(IMAP);
    f.push(Buffer.from('t1 NOOP ' + 'z'.repeat(60)));
    assert.deepEqual(show(f.next()!), 'LINE_TOO_LONG <t1 NOOP >');
    f.push(Buffer.from('zzz\r\nt2 NOOP\r\n'));
    assert.equal(show(f.next()!), '[t2 NOOP]');
    assert.equal(f.next(), null);
  });

  it('gives raw lines between commands, drains and resets', () => {
    const f = new LiteralFramer(IMAP);
    f.push(Buffer.from('dGVzdA==\r\n' + 'q'.repeat(60) + '\r\nnext\r\nrest'));
    assert.deepEqual(f.nextLine(), { type: 'line', text: 'dGVzdA==' });
    assert.deepEqual(f.nextLine(), { type: 'error', error: 'LINE_TOO_LONG' });
    assert.deepEqual(f.nextLine(), { type: 'line', text: 'next' });
    assert.equal(f.nextLine(), null);
    assert.equal(f.buffered, 4);
    assert.equal(f.drain().toString(), 'rest');
    assert.equal(f.buffered, 0);
    f.push(Buffer.from('t1 X {3}\r\nab'));
    assert.equal(show(f.next()!), '+');
    f.reset();
    f.push(Buffer.from('t2 NOOP\r\n'));
    assert.equal(show(f.next()!), '[t2 NOOP]');
  });

  it('scans quoted strings with only \\" and \\\\ escapes, strict UTF-8', () => {
    const seg = Buffer.from('X "a\\"b\\\\c" rest');
    assert.deepEqual(scanQuoted(seg, 2), { value: 'a"b\\c', end: 11 });
    assert.equal(scanQuoted(Buffer.from('"a\\nb"'), 0), null);
    assert.equal(scanQuoted(Buffer.from('"open'), 0), null);
    assert.equal(scanQuoted(Buffer.from('"a\rb"'), 0), null);
    assert.equal(scanQuoted(Buffer.from([0x22, 0xff, 0x22]), 0), null);
    assert.deepEqual(scanQuoted(Buffer.from('"grüße"'), 0), { value: 'grüße', end: Buffer.byteLength('"grüße"') });
    assert.equal(literalText(Buffer.from('a\0b')), null);
    assert.equal(literalText(Buffer.from('ok')), 'ok');
    assert.equal(decodeUtf8(Buffer.from([0xc3])), null);
  });
});
