import assert from 'node:assert/strict';
import { quote, quoteAscii } from '../../../src/proxy/imap/replies.js';

describe('IMAP quoted strings', () => {
  it('quoteAscii: plain printable ASCII is quoted as is; quotes, backslashes, controls and non-ASCII are escaped or replaced', () => {
    assert.equal(quoteAscii('127.0.0.1'), '"127.0.0.1"');
    assert.equal(quoteAscii(''), '""');
    assert.equal(quoteAscii('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(quoteAscii('x\r\ny\0'), '"x??y?"');
    assert.equal(quoteAscii('päss✓'), '"p?ss?"');
    assert.equal(quoteAscii('tab\there'), '"tab?here"');
    // Every printable ASCII byte but " and \ passes unchanged; the result is always what quote() makes of the ASCII text.
    for (let c = 0x20; c < 0x7f; c++) {
      const ch = String.fromCharCode(c);
      assert.equal(quoteAscii(`a${ch}b`), quote(`a${ch}b`));
    }
  });
});
