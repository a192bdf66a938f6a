// Proves SMTP dot-stuffing as a stream transform, split at every pair of offsets, and bare-LF and bare-CR normalisation.
// Must not open sockets.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { DotStuffer, DotStuffStream, dotStuff } from '../../../src/proxy/smtp/dot-stuff.js';

/** Reference: the RFC 5321 §4.5.2 rule written the slow, obvious way. */
function reference(message: string): string {
  if (message === '') return '.\r\n';
  let text = message.replace(/\r\n|\r|\n/g, '\r\n');
  if (!text.endsWith('\r\n')) text += '\r\n';
  return `${text.replace(/^\./gm, '..')}.\r\n`;
}

function stuffChunks(chunks: Buffer[]): Buffer {
  const s = new DotStuffer();
  return Buffer.concat([...chunks.map((c) => s.push(c)), s.end()]);
}

const CASES = [
  '',
  'hello\r\n',
  '.\r\n',
  '..\r\n',
  '.leading dot\r\nmiddle\r\n.second\r\n',
  'no final newline',
  'ends with dot\r\n.',
  'a\r\n.\r\nb\r\n',
  'smuggle\n.\r\nMAIL FROM:<x>\r\n',
  'bare\nlines\n.dot\n',
  'cr only\r',
  '\r\n\r\n.\r\n..\r\n...\r\n',
  'x.\r\n.y\r\n',
  'smuggle\r.\rMAIL FROM:<x>\r\n',
  'body\r.\r\nMAIL FROM:<x>\r\n',
  'a\rb\r\r\n.c\r',
  '\r.\r.\r\n\r',
  '\r\r\n\n\r.',
];

describe('smtp dot-stuffing stream', () => {
  for (const msg of CASES) {
    it(`stuffs ${JSON.stringify(msg)} identically at every split offset`, () => {
      const buf = Buffer.from(msg, 'latin1');
      const want = reference(msg);
      assert.equal(dotStuff(buf).toString('latin1'), want);
      for (let i = 0; i <= buf.length; i++) {
        for (let j = i; j <= buf.length; j++) {
          const out = stuffChunks([buf.subarray(0, i), buf.subarray(i, j), buf.subarray(j)]);
          assert.equal(out.toString('latin1'), want, `split at ${i},${j}`);
        }
      }
    });
  }

  it('never lets CRLF.CRLF appear before the end, whatever the chunking', () => {
    const msg = Buffer.from('line\r\n.\r\n.\r\n\n.\n\r\n.\r\n\r.\r\r.\r\n\n.\r\r\n.\n\n.\nend', 'latin1');
    for (let i = 0; i <= msg.length; i++) {
      const out = stuffChunks([msg.subarray(0, i), msg.subarray(i)]).toString('latin1');
      assert.equal(out.indexOf('\r\n.\r\n'), out.length - 5, `split at ${i}`);
      // A backend that takes a lone CR or LF for a line end sees no lone "." line before the end either.
      assert.deepEqual(out.split(/\r\n|\r|\n/).slice(0, -2).filter((l) => l === '.'), [], `split at ${i}`);
      assert.doesNotMatch(out, /\r(?!\n)|(?<!\r)\n/, 'only CRLF line ends');
    }
  });

  it('counts message bytes taken in', () => {
    const s = new DotStuffer();
    s.push(Buffer.from('.a\r\n'));
    s.push(Buffer.from('b\n'));
    assert.equal(s.bytesIn, 6);
  });

  it('works as a Transform stream with the terminator in its flush', async () => {
    const chunks = ['Subject: x\r\n\r\n', '.hidden', '\r\n', '.', '\r\n'].map((c) => Buffer.from(c));
    const out: Buffer[] = [];
    const t = Readable.from(chunks).pipe(new DotStuffStream());
    for await (const c of t) out.push(c as Buffer);
    assert.equal(Buffer.concat(out).toString(), 'Subject: x\r\n\r\n..hidden\r\n..\r\n.\r\n');
  });

  it('leaves a CRLF message byte-identical apart from stuffing', () => {
    const body = Buffer.alloc(100_000);
    for (let i = 0; i < body.length; i++) body[i] = i % 80 === 78 ? 13 : i % 80 === 79 ? 10 : 65 + (i % 26);
    const out = dotStuff(body);
    assert.deepEqual(out.subarray(0, body.length), body);
    assert.equal(out.subarray(body.length).toString(), '.\r\n');
  });
});
