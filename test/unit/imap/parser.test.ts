// Proves the IMAP command parser: every argument form, pipelining, limits, each input also split at every byte offset.
// Must not test replies or dialogue state.
import assert from 'node:assert/strict';
import { ImapCommandParser, type ParseResult } from '../../../src/proxy/imap/parser.js';
import { LIMITS, splits } from './helpers.js';

function run(chunks: Buffer[], limits = LIMITS): { results: ParseResult[]; rest: string } {
  const p = new ImapCommandParser(limits);
  const results: ParseResult[] = [];
  for (const c of chunks) {
    p.push(c);
    for (let r = p.next(); r; r = p.next()) results.push(r);
  }
  return { results, rest: p.drain().toString('latin1') };
}

/** Parse `input` whole, then split at every offset and byte by byte: all must agree. */
function parse(input: string | Buffer): { results: ParseResult[]; rest: string } {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8');
  const whole = run([buf]);
  for (const chunks of splits(buf)) assert.deepEqual(run(chunks), whole, `split ${chunks.map((c) => c.length).join('+')}`);
  return whole;
}

const cmd = (tag: string, name: string, ...args: unknown[]) => ({ type: 'command', command: { tag, name, args } });
const atom = (value: string) => ({ type: 'atom', value });
const str = (value: string) => ({ type: 'string', value });
const err = (error: string, tag: string | null, fatal = false) => ({ type: 'error', error, tag, fatal });
const CONT = { type: 'continue' };

describe('imap parser', () => {
  it('reads atoms and upper-cases the command name', () => {
    assert.deepEqual(parse('a1 login user pass\r\n').results, [cmd('a1', 'LOGIN', atom('user'), atom('pass'))]);
  });

  it('reads a command without arguments', () => {
    assert.deepEqual(parse('x.1 CAPABILITY\r\n').results, [cmd('x.1', 'CAPABILITY')]);
  });

  it('reads quoted strings with \\" and \\\\ escapes', () => {
    assert.deepEqual(parse('a LOGIN "us\\"er" "p\\\\ss word"\r\n').results, [cmd('a', 'LOGIN', str('us"er'), str('p\\ss word'))]);
  });

  it('accepts an empty quoted string and UTF-8 inside quotes', () => {
    assert.deepEqual(parse('a LOGIN "jürgen" ""\r\n').results, [cmd('a', 'LOGIN', str('jürgen'), str(''))]);
  });

  it('rejects other escapes, unterminated quotes and invalid UTF-8', () => {
    assert.deepEqual(parse('a LOGIN "a\\nb" x\r\n').results, [err('SYNTAX', 'a')]);
    assert.deepEqual(parse('a LOGIN "abc\r\n').results, [err('SYNTAX', 'a')]);
    assert.deepEqual(parse(Buffer.from([...Buffer.from('a LOGIN "'), 0xc3, 0x28, ...Buffer.from('" x\r\n')])).results, [err('SYNTAX', 'a')]);
  });

  it('asks for a continuation before each synchronising literal', () => {
    assert.deepEqual(parse('a LOGIN {4}\r\nuser {6}\r\np\r\nss \r\n').results, [CONT, CONT, cmd('a', 'LOGIN', str('user'), str('p\r\nss '))]);
  });

  it('takes non-synchronising literals (LITERAL+) without a continuation', () => {
    assert.deepEqual(parse('a LOGIN {4+}\r\nuser {0+}\r\n\r\n').results, [cmd('a', 'LOGIN', str('user'), str(''))]);
  });

  it('decodes UTF-8 literals by byte count', () => {
    const pw = 'pässwörd';
    const n = Buffer.byteLength(pw);
    assert.deepEqual(parse(`a LOGIN u {${n}+}\r\n${pw}\r\n`).results, [cmd('a', 'LOGIN', atom('u'), str(pw))]);
  });

  it('rejects NUL inside a literal', () => {
    assert.deepEqual(parse('a LOGIN u {3+}\r\na\0b\r\n').results, [err('SYNTAX', 'a')]);
  });

  it('reads parenthesised lists, nested, with NIL', () => {
    assert.deepEqual(parse('a ID ("name" "x" "version" NIL)\r\n').results, [
      cmd('a', 'ID', { type: 'list', items: [str('name'), str('x'), str('version'), atom('NIL')] }),
    ]);
    assert.deepEqual(parse('a X (a (b {1+}\r\nc) ())\r\n').results, [
      cmd('a', 'X', { type: 'list', items: [atom('a'), { type: 'list', items: [atom('b'), str('c')] }, { type: 'list', items: [] }] }),
    ]);
  });

  it('limits list nesting', () => {
    assert.deepEqual(parse(`a X ${'('.repeat(9)}${')'.repeat(9)}\r\n`).results, [err('SYNTAX', 'a')]);
    assert.deepEqual(parse('a X (a b\r\n').results, [err('SYNTAX', 'a')]);
  });

  it('accepts base64 and "=" as atoms', () => {
    assert.deepEqual(parse('a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\nb AUTHENTICATE PLAIN =\r\n').results, [
      cmd('a', 'AUTHENTICATE', atom('PLAIN'), atom('AHVzZXIAcGFzcw==')),
      cmd('b', 'AUTHENTICATE', atom('PLAIN'), atom('=')),
    ]);
  });

  it('returns pipelined commands in order and keeps the rest buffered', () => {
    const r = parse('a CAPABILITY\r\nb LOGIN u p\r\nc SELECT INBOX\r\nd NOO');
    assert.deepEqual(r.results, [cmd('a', 'CAPABILITY'), cmd('b', 'LOGIN', atom('u'), atom('p')), cmd('c', 'SELECT', atom('INBOX'))]);
    assert.equal(r.rest, 'd NOO');
  });

  it('ignores empty lines, tolerates bare LF and extra spaces', () => {
    assert.deepEqual(parse('\r\n\na NOOP\nb LOGIN  u p \r\n').results, [cmd('a', 'NOOP'), cmd('b', 'LOGIN', atom('u'), atom('p'))]);
  });

  it('reports syntax errors with the tag when one can be read', () => {
    assert.deepEqual(parse('a\r\n+x NOOP\r\na (NOOP\r\nb NO"OP\r\nc LOGIN "x"y\r\n').results, [
      err('SYNTAX', null), err('SYNTAX', null), err('SYNTAX', 'a'), err('SYNTAX', 'b'), err('SYNTAX', 'c'),
    ]);
    assert.deepEqual(parse(Buffer.from([...Buffer.from('a LOGIN u'), 0xe9, ...Buffer.from(' p\r\n')])).results, [err('SYNTAX', 'a')]);
  });

  it('rejects a line over maxLineBytes and skips the rest of it', () => {
    const long = `a LOGIN ${'x'.repeat(600)} b NOOP\r\nc NOOP\r\n`;
    assert.deepEqual(parse(long).results, [err('LINE_TOO_LONG', 'a'), cmd('c', 'NOOP')]);
    assert.deepEqual(parse(`${'x'.repeat(600)}\r\nc NOOP\r\n`).results, [err('LINE_TOO_LONG', null), cmd('c', 'NOOP')]);
  });

  it('accepts a line of exactly maxLineBytes', () => {
    const line = `a X ${'y'.repeat(LIMITS.maxLineBytes - 4)}`;
    assert.equal(line.length, LIMITS.maxLineBytes);
    assert.equal(parse(`${line}\r\n`).results[0]?.type, 'command');
    assert.equal(parse(`${line}y\r\n`).results[0]?.type, 'error');
  });

  it('counts command text across literals towards maxLineBytes', () => {
    const half = 'y'.repeat(300);
    assert.deepEqual(parse(`a X ${half} {1+}\r\nz ${half}\r\nb NOOP\r\n`).results, [err('LINE_TOO_LONG', 'a'), cmd('b', 'NOOP')]);
  });

  it('never reads a skipped line\'s non-synchronising literal as commands', () => {
    const input = `a X ${'x'.repeat(600)} {16+}\r\n\r\nb LOGIN u p\r\nX rest {3+}\r\nc\r\n tail\r\nd NOOP\r\n`;
    assert.deepEqual(parse(input).results, [err('LINE_TOO_LONG', 'a'), cmd('d', 'NOOP')]);
  });

  it('rejects a synchronising literal over maxLiteralBytes without asking for it', () => {
    assert.deepEqual(parse('a LOGIN {65}\r\nb NOOP\r\n').results, [err('LITERAL_TOO_LARGE', 'a'), cmd('b', 'NOOP')]);
    assert.deepEqual(parse('a LOGIN {99999999999999999999}\r\nb NOOP\r\n').results, [err('LITERAL_TOO_LARGE', 'a'), cmd('b', 'NOOP')]);
  });

  it('marks an over-limit non-synchronising literal as fatal', () => {
    assert.deepEqual(parse('a LOGIN {65+}\r\n').results, [err('LITERAL_TOO_LARGE', 'a', true)]);
  });

  it('caps the total literal bytes of one command at twice maxLiteralBytes', () => {
    const l = 'z'.repeat(60);
    assert.deepEqual(parse(`a X {60+}\r\n${l} {60+}\r\n${l} {60}\r\n`).results, [err('LITERAL_TOO_LARGE', 'a')]);
  });

  it('reset drops buffered bytes and any partial command', () => {
    const p = new ImapCommandParser(LIMITS);
    p.push(Buffer.from('a STARTTLS\r\nb LOGIN {4}\r\n'));
    assert.deepEqual(p.next(), cmd('a', 'STARTTLS'));
    p.reset();
    assert.equal(p.buffered, 0);
    p.push(Buffer.from('user\r\nc NOOP\r\n'));
    assert.deepEqual(p.next(), err('SYNTAX', null));
    assert.deepEqual(p.next(), cmd('c', 'NOOP'));
    assert.equal(p.next(), null);
  });

  describe('raw lines (SASL responses)', () => {
    function lines(input: string): unknown[] {
      const buf = Buffer.from(input);
      const collect = (chunks: Buffer[]) => {
        const p = new ImapCommandParser(LIMITS);
        const out: unknown[] = [];
        for (const c of chunks) {
          p.push(c);
          for (let r = p.nextLine(); r; r = p.nextLine()) out.push(r);
        }
        return out;
      };
      const whole = collect([buf]);
      for (const chunks of splits(buf)) assert.deepEqual(collect(chunks), whole);
      return whole;
    }

    it('returns lines verbatim', () => {
      assert.deepEqual(lines('dXNlcg==\r\n*\r\n\r\n'), [{ type: 'line', text: 'dXNlcg==' }, { type: 'line', text: '*' }, { type: 'line', text: '' }]);
    });

    it('rejects and skips an over-long line', () => {
      assert.deepEqual(lines(`${'A'.repeat(600)}\r\nQQ==\r\n`), [{ type: 'error', error: 'LINE_TOO_LONG' }, { type: 'line', text: 'QQ==' }]);
    });
  });
});
