// Unit tests for SNI certificate choice (exact, wildcard, default), server-name normalisation and the sni schema.
// Must not open sockets or read certificate files (tls-sni-alpn.test.ts and tls-check-config.test.ts do).
import assert from 'node:assert/strict';
import { normalizeServerName, selectCertificate, ALPN_IDS } from '../../../src/tls/certificates.js';
import { configSchema } from '../../../src/config/schema.js';

describe('tls: SNI certificate selection', () => {
  const entries = [
    { names: ['mail.example.com', 'imap.example.com'] },
    { names: ['*.example.com'] },
    { names: ['*.example.net', 'example.net'] },
    { names: ['x.example.com'] },
  ];

  it('prefers an exact name over an earlier wildcard', () => {
    assert.equal(selectCertificate(entries, 'x.example.com'), 3);
    assert.equal(selectCertificate(entries, 'imap.example.com'), 0);
  });

  it('a wildcard covers exactly one label', () => {
    assert.equal(selectCertificate(entries, 'pop.example.com'), 1);
    assert.equal(selectCertificate(entries, 'a.b.example.com'), -1);
    assert.equal(selectCertificate(entries, 'example.com'), -1);
    assert.equal(selectCertificate(entries, 'example.net'), 2);
    assert.equal(selectCertificate(entries, 'foo.example.net'), 2);
  });

  it('matches case-insensitively and ignores a trailing dot; no or unknown name is the default (-1)', () => {
    assert.equal(selectCertificate(entries, 'MAIL.Example.COM.'), 0);
    assert.equal(normalizeServerName(' Mail.Example.com. '), 'mail.example.com');
    assert.equal(selectCertificate(entries, undefined), -1);
    assert.equal(selectCertificate(entries, ''), -1);
    assert.equal(selectCertificate(entries, 'other.org'), -1);
    assert.equal(selectCertificate(entries, 'com'), -1);
    assert.equal(selectCertificate([], 'mail.example.com'), -1);
  });

  it('knows the ALPN id of every listener protocol (submission speaks smtp)', () => {
    assert.equal(ALPN_IDS['imap'], 'imap');
    assert.equal(ALPN_IDS['pop3'], 'pop3');
    assert.equal(ALPN_IDS['submission'], 'smtp');
    assert.equal(ALPN_IDS['managesieve'], 'managesieve');
  });

  const base = { listeners: [{ protocol: 'imap', port: 0, tls: 'none' }], directory: { type: 'static', static: { file: 'x' } } };
  it('schema: sni entries need names; a wildcard must be the whole first label; defaults are backwards compatible', () => {
    const ok = configSchema.parse({ ...base, tls: { certFile: 'c', keyFile: 'k' } });
    assert.deepEqual(ok.tls?.sni, []);
    assert.equal(ok.tls?.strictAlpn, true);
    assert.equal(ok.tls?.expiryWarningDays, 14);
    assert.ok(configSchema.safeParse({ ...base, tls: { certFile: 'c', keyFile: 'k', sni: [{ names: ['*.example.com'], certFile: 'a', keyFile: 'b' }] } }).success);
    for (const names of [[], ['mail*.example.com'], ['*.*.example.com'], ['a.*.example.com']]) {
      assert.equal(configSchema.safeParse({ ...base, tls: { certFile: 'c', keyFile: 'k', sni: [{ names, certFile: 'a', keyFile: 'b' }] } }).success, false, JSON.stringify(names));
    }
  });
});
