// Proves the Received: trace header (RFC 5321 §4.4) formatting and sanitising.
// Must not open sockets.
import assert from 'node:assert/strict';
import { addressLiteral, formatReceived, formatRfc5322Date, safeToken } from '../../../src/proxy/smtp/received.js';

const date = new Date(Date.UTC(2026, 1, 3, 9, 4, 5));

describe('smtp Received header', () => {
  it('formats RFC 5322 dates in UTC', () => {
    assert.equal(formatRfc5322Date(date), 'Tue, 3 Feb 2026 09:04:05 +0000');
  });

  it('follows RFC 5321 §4.4 with rDNS, address literal, protocol, id and one recipient', () => {
    const h = formatReceived({ helo: 'mx.sender.example', clientAddress: '192.0.2.7', clientHostname: 'mail.sender.example', byHostname: 'proxy.example.test', protocol: 'ESMTPS', id: 'abc123.1', recipient: 'alice@example.test', date });
    assert.equal(h, 'Received: from mx.sender.example (mail.sender.example [192.0.2.7])\r\n\tby proxy.example.test with ESMTPS id abc123.1\r\n\tfor <alice@example.test>; Tue, 3 Feb 2026 09:04:05 +0000\r\n');
    for (const line of h.split('\r\n')) assert.ok(line.length <= 78, line);
  });

  it('uses the bare address literal without rDNS and leaves "for" out for several recipients', () => {
    const h = formatReceived({ helo: 'client', clientAddress: '2001:db8::1', clientHostname: '[2001:db8::1]', byHostname: 'proxy', protocol: 'ESMTP', id: 'x', date });
    assert.equal(h, 'Received: from client ([IPv6:2001:db8::1])\r\n\tby proxy with ESMTP id x;\r\n\tTue, 3 Feb 2026 09:04:05 +0000\r\n');
  });

  it('maps IPv4-mapped IPv6 to an IPv4 literal', () => {
    assert.equal(addressLiteral('::ffff:127.0.0.1'), '[127.0.0.1]');
  });

  it('neutralises hostile HELO names and recipients', () => {
    const h = formatReceived({ helo: 'evil (x); by\tfoo', clientAddress: '10.0.0.1', byHostname: 'proxy', protocol: 'SMTP', id: 'y', recipient: 'a b@x>', date });
    assert.match(h, /^Received: from evil\?\?x\?\?\?by\?foo \(\[10\.0\.0\.1\]\)\r\n/);
    assert.doesNotMatch(h, /for </);
    assert.equal(safeToken(''), 'unknown');
  });
});
