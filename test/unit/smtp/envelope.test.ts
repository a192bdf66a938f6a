// Proves the envelope rules of the SMTP front-ends: IDNA domains go on in ASCII form, non-ASCII local parts and
// parameters that are not offered (DSN, SMTPUTF8, REQUIRETLS, unknown) are refused with their RFC reply codes.
// Must not open sockets.
import assert from 'node:assert/strict';
import type { SMTPServerAddress } from 'smtp-server';
import { asciiAddress, checkEnvelopeAddress, unsupportedParameter } from '../../../src/proxy/smtp/envelope.js';

const addr = (address: string, args: Record<string, string | true> | false = false): SMTPServerAddress => ({ address, args } as SMTPServerAddress);

describe('SMTP envelope rules', () => {
  it('an IDNA domain (as smtp-server hands it over, in Unicode) goes back to its A-label form; ASCII stays as typed', () => {
    assert.deepEqual(asciiAddress('info@münchen.de'), { address: 'info@xn--mnchen-3ya.de' });
    assert.deepEqual(asciiAddress('Alice@bücher.Example'), { address: 'Alice@xn--bcher-kva.example' });
    assert.deepEqual(asciiAddress('Alice@EXAMPLE.test'), { address: 'Alice@EXAMPLE.test' });
    assert.deepEqual(asciiAddress(''), { address: '' });
  });

  it('a non-ASCII local part is refused 553 5.6.7 (SMTPUTF8 is not offered)', () => {
    for (const a of ['jörg@example.org', 'ålice@bücher.example', 'пример']) {
      const r = asciiAddress(a);
      assert.ok('reply' in r, a);
      assert.equal(r.reply.code, 553);
      assert.match(r.reply.text, /^5\.6\.7 /);
    }
  });

  it('MAIL takes SIZE, BODY and AUTH only; RCPT takes no parameter (555 5.5.4 names the first other one)', () => {
    assert.equal(unsupportedParameter(false, 'mail'), undefined);
    assert.equal(unsupportedParameter({ SIZE: '10', BODY: '8BITMIME', AUTH: '<>' }, 'mail'), undefined);
    for (const p of ['SMTPUTF8', 'RET', 'ENVID', 'REQUIRETLS', 'FOO']) assert.equal(unsupportedParameter({ SIZE: '1', [p]: true }, 'mail'), p);
    for (const p of ['NOTIFY', 'ORCPT', 'FOO']) assert.equal(unsupportedParameter({ [p]: 'x' }, 'rcpt'), p);
    const refused = checkEnvelopeAddress(addr('alice@example.test', { NOTIFY: 'SUCCESS' }), 'rcpt');
    assert.deepEqual(refused, { code: 555, text: '5.5.4 Unsupported parameter NOTIFY' });
  });

  it('checkEnvelopeAddress rewrites the parsed address in place when it accepts it', () => {
    const a = addr('bob@bücher.example', { SIZE: '100' });
    assert.equal(checkEnvelopeAddress(a, 'mail'), null);
    assert.equal(a.address, 'bob@xn--bcher-kva.example');
    const null_ = addr('');
    assert.equal(checkEnvelopeAddress(null_, 'mail'), null);
    assert.equal(null_.address, '');
  });
});
