// Proves PROXY protocol v1/v2 parsing (every prefix, garbage rejected at once), encoding, and trusted-network checks.
// Must not open sockets.
import assert from 'node:assert/strict';
import { buildTrustList, encodeProxyV2, isTrustedSource, parseProxyHeader, type ProxyHeader } from '../../../src/core/proxy-header.js';
import { ProxyError } from '../../../src/errors.js';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** need-more, with the whole header's length as `needed` once a v2 header's fixed 16 bytes are there. */
function needMore(input: Buffer, i: number): { state: 'need-more'; needed?: number } {
  return input[0] === 0x0d && i >= 16 ? { state: 'need-more', needed: 16 + input.readUInt16BE(14) } : { state: 'need-more' };
}

/** Every proper prefix is need-more; the whole input (with trailing bytes) is done with the exact consumed count. */
function expectHeader(input: Buffer, header: ProxyHeader): void {
  for (let i = 0; i < input.length; i++) {
    assert.deepEqual(parseProxyHeader(input.subarray(0, i)), needMore(input, i), `prefix of ${i} bytes`);
  }
  assert.deepEqual(parseProxyHeader(input), { state: 'done', header, consumed: input.length });
  const withPayload = Buffer.concat([input, Buffer.from('a001 LOGIN x y\r\n')]);
  assert.deepEqual(parseProxyHeader(withPayload), { state: 'done', header, consumed: input.length });
}

/** An error as soon as the offending byte is there: every prefix from `from` bytes on is an error. */
function expectError(input: Buffer, from: number, reason?: RegExp): void {
  for (let i = 0; i < from; i++) assert.deepEqual(parseProxyHeader(input.subarray(0, i)), needMore(input, i), `prefix of ${i} bytes`);
  for (let i = from; i <= input.length; i++) {
    const r = parseProxyHeader(input.subarray(0, i));
    assert.equal(r.state, 'error', `prefix of ${i} bytes`);
    if (reason && r.state === 'error') assert.match(r.reason, reason);
  }
}

function v2(verCmd: number, fam: number, body: Buffer): Buffer {
  const fixed = Buffer.from([verCmd, fam, 0, 0]);
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIG, fixed, body]);
}

const tlv = (type: number, value: Buffer): Buffer => {
  const h = Buffer.from([type, 0, 0]);
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
};

describe('PROXY protocol header', () => {
  describe('v1', () => {
    it('TCP4', () => {
      expectHeader(Buffer.from('PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n'), {
        version: 1, command: 'PROXY', family: 'tcp4', source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.2', port: 143 },
      });
    });

    it('TCP6 with the longest addresses', () => {
      const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
      const input = Buffer.from(`PROXY TCP6 ${a} ${a} 65535 65535\r\n`);
      expectHeader(input, { version: 1, command: 'PROXY', family: 'tcp6', source: { address: a, port: 65535 }, destination: { address: a, port: 65535 } });
      expectHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 0 995\r\n'), {
        version: 1, command: 'PROXY', family: 'tcp6', source: { address: '2001:db8::1', port: 0 }, destination: { address: '::1', port: 995 },
      });
    });

    it('UNKNOWN, with or without addresses', () => {
      expectHeader(Buffer.from('PROXY UNKNOWN\r\n'), { version: 1, command: 'PROXY', family: 'unknown' });
      const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
      const longest = Buffer.from(`PROXY UNKNOWN ${a} ${a} 65535 65535\r\n`);
      assert.equal(longest.length, 107);
      expectHeader(longest, { version: 1, command: 'PROXY', family: 'unknown' });
    });

    it('rejects bad fields once the line is complete', () => {
      for (const bad of [
        'PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n', 'PROXY TCP4 2001:db8::1 ::1 1 2\r\n', 'PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n',
        'PROXY TCP4 192.0.2.1 198.51.100.2 65536 1\r\n', 'PROXY TCP4 192.0.2.1 198.51.100.2 01 1\r\n', 'PROXY TCP4 192.0.2.256 198.51.100.2 1 1\r\n',
        'PROXY UDP4 192.0.2.1 198.51.100.2 1 1\r\n', 'PROXY TCP4  192.0.2.1 198.51.100.2 1 1\r\n',
        // A zone id is no address on the wire (the spec's TCP6 form is RFC 4291 text); Dovecot cannot read it as x-originating-ip.
        'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 'PROXY TCP6 fe80::1 ::1%lo 1 2\r\n',
      ]) {
        const r = parseProxyHeader(Buffer.from(bad));
        assert.equal(r.state, 'error', bad);
      }
    });

    it('rejects a bare LF, a control byte, or CR without LF as soon as seen', () => {
      expectError(Buffer.from('PROXY TCP4 1.2.3.4\n'), 19, /invalid byte/);
      expectError(Buffer.from('PROXY \x00'), 7, /invalid byte/);
      expectError(Buffer.from('PROXY UNKNOWN\rX'), 15, /CR not followed by LF/);
    });

    it('rejects a line without CRLF within 107 bytes', () => {
      const input = Buffer.from(`PROXY TCP6 ${'a'.repeat(120)}`);
      expectError(input, 106, /longer than 107/);
      const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
      expectError(Buffer.from(`PROXY UNKNOWN ${a} ${a} 65535 655350\r\n`), 106, /longer than 107/);
    });
  });

  describe('v2', () => {
    const v4body = Buffer.from([192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x00, 0x8f]);

    it('PROXY over IPv4, with TLVs skipped', () => {
      const body = Buffer.concat([v4body, tlv(0x01, Buffer.from('imap')), tlv(0x04, Buffer.alloc(0)), tlv(0x20, Buffer.alloc(300, 7))]);
      expectHeader(v2(0x21, 0x11, body), {
        version: 2, command: 'PROXY', family: 'tcp4', source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.2', port: 143 },
      });
    });

    it('PROXY over IPv6, addresses in RFC 5952 form', () => {
      const src = Buffer.from('20010db8000000000000000000000001', 'hex');
      const dst = Buffer.from('00000000000000000000ffffc0000201', 'hex');
      const body = Buffer.concat([src, dst, Buffer.from([0x30, 0x39, 0x03, 0xe3]), tlv(0x05, Buffer.from('unique-id'))]);
      expectHeader(v2(0x21, 0x21, body), {
        version: 2, command: 'PROXY', family: 'tcp6', source: { address: '2001:db8::1', port: 12345 }, destination: { address: '::ffff:192.0.2.1', port: 995 },
      });
    });

    it('LOCAL (health checks) carries no addresses, whatever follows', () => {
      expectHeader(v2(0x20, 0x00, Buffer.alloc(0)), { version: 2, command: 'LOCAL', family: 'unknown' });
      expectHeader(v2(0x20, 0x11, Buffer.concat([v4body, tlv(0x03, Buffer.from([1, 2, 3, 4]))])), { version: 2, command: 'LOCAL', family: 'unknown' });
    });

    it('UNSPEC and UNIX families are accepted without addresses', () => {
      expectHeader(v2(0x21, 0x00, Buffer.alloc(0)), { version: 2, command: 'PROXY', family: 'unknown' });
      expectHeader(v2(0x21, 0x31, Buffer.alloc(216)), { version: 2, command: 'PROXY', family: 'unknown' });
    });

    it('rejects bad version, command or family as soon as the byte arrives', () => {
      expectError(v2(0x11, 0x11, v4body), 13, /version/);
      expectError(v2(0x22, 0x11, v4body), 13, /command/);
      expectError(v2(0x21, 0x41, v4body), 14, /family/);
    });

    it('rejects short address blocks and malformed TLVs once complete', () => {
      const short = v2(0x21, 0x11, v4body.subarray(0, 8));
      assert.deepEqual(parseProxyHeader(short.subarray(0, short.length - 1)), { state: 'need-more', needed: short.length });
      assert.equal(parseProxyHeader(short).state, 'error');
      assert.equal(parseProxyHeader(v2(0x21, 0x21, Buffer.alloc(20))).state, 'error');
      assert.equal(parseProxyHeader(v2(0x21, 0x11, Buffer.concat([v4body, Buffer.from([0x01, 0x00, 0x05, 0x61])]))).state, 'error');
      assert.equal(parseProxyHeader(v2(0x21, 0x11, Buffer.concat([v4body, Buffer.from([0x01, 0x00])]))).state, 'error');
    });
  });

  describe('not a PROXY header', () => {
    it('is rejected at the first byte that differs from both signatures', () => {
      assert.deepEqual(parseProxyHeader(Buffer.alloc(0)), { state: 'need-more' });
      for (const [input, from] of [['a001 CAPABILITY\r\n', 1], ['USER bob\r\n', 1], ['EHLO x\r\n', 1], ['PROXZ', 5], ['PROXY\r\n', 6]] as const) {
        expectError(Buffer.from(input), from, /not a PROXY/);
      }
      expectError(Buffer.from('\r\n\r\nX'), 5, /not a PROXY/);
      expectError(Buffer.from('\x16\x03\x01\x02\x00'), 1, /not a PROXY/);
    });
  });

  describe('encodeProxyV2', () => {
    it('encodes IPv4 and round-trips through the parser', () => {
      const buf = encodeProxyV2({ source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.2', port: 143 } });
      assert.equal(buf.subarray(0, 16).toString('hex'), `${SIG.toString('hex')}2111000c`);
      assert.deepEqual(parseProxyHeader(buf), {
        state: 'done', consumed: 28,
        header: { version: 2, command: 'PROXY', family: 'tcp4', source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.2', port: 143 } },
      });
    });

    it('sends IPv4-mapped sockets as IPv4, mixed families as IPv6', () => {
      const mapped = parseProxyHeader(encodeProxyV2({ source: { address: '::ffff:192.0.2.1', port: 1 }, destination: { address: '::ffff:10.0.0.1', port: 2 } }));
      assert.equal(mapped.state === 'done' && mapped.header.family, 'tcp4');
      assert.deepEqual(mapped.state === 'done' && mapped.header.source, { address: '192.0.2.1', port: 1 });
      const mixed = parseProxyHeader(encodeProxyV2({ source: { address: '192.0.2.1', port: 1 }, destination: { address: '2001:db8:0:0:1::', port: 2 } }));
      assert.deepEqual(mixed.state === 'done' && mixed.header, {
        version: 2, command: 'PROXY', family: 'tcp6', source: { address: '::ffff:192.0.2.1', port: 1 }, destination: { address: '2001:db8:0:0:1::', port: 2 },
      });
      const v6 = parseProxyHeader(encodeProxyV2({ source: { address: 'fe80::1%eth0', port: 3 }, destination: { address: '::', port: 4 } }));
      assert.deepEqual(v6.state === 'done' && v6.header.source, { address: 'fe80::1', port: 3 });
      assert.deepEqual(v6.state === 'done' && v6.header.destination, { address: '::', port: 4 });
    });

    it('adds the PP2_TYPE_SSL TLV (client flag PP2_CLIENT_SSL, verify 0) when the client used TLS', () => {
      const endpoints = { source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.2', port: 993 } };
      const buf = encodeProxyV2(endpoints, { ssl: true });
      assert.equal(buf.subarray(12, 16).toString('hex'), '21110014');
      assert.equal(buf.subarray(28).toString('hex'), '2000050100000000');
      assert.deepEqual(parseProxyHeader(buf), {
        state: 'done', consumed: 36,
        header: { version: 2, command: 'PROXY', family: 'tcp4', ...endpoints },
      });
      assert.equal(encodeProxyV2(endpoints, { ssl: false }).length, 28);
    });

    it('falls back to LOCAL for something that is not an address', () => {
      const buf = encodeProxyV2({ source: { address: 'unix:/x', port: 1 }, destination: { address: '10.0.0.1', port: 2 } });
      assert.deepEqual(parseProxyHeader(buf), { state: 'done', consumed: 16, header: { version: 2, command: 'LOCAL', family: 'unknown' } });
    });
  });

  describe('isTrustedSource', () => {
    const cidrs = ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::ffff:172.16.0.0/108'];

    it('matches IPv4 and IPv6 networks and single addresses', () => {
      assert.equal(isTrustedSource('10.200.1.1', cidrs), true);
      assert.equal(isTrustedSource('11.0.0.1', cidrs), false);
      assert.equal(isTrustedSource('192.0.2.7', cidrs), true);
      assert.equal(isTrustedSource('192.0.2.8', cidrs), false);
      assert.equal(isTrustedSource('2001:db8:ffff::1', cidrs), true);
      assert.equal(isTrustedSource('2001:db9::1', cidrs), false);
      assert.equal(isTrustedSource('172.16.3.4', cidrs), true);
      assert.equal(isTrustedSource('172.32.0.1', cidrs), false);
    });

    it('treats IPv4-mapped IPv6 as IPv4', () => {
      assert.equal(isTrustedSource('::ffff:10.1.2.3', cidrs), true);
      assert.equal(isTrustedSource('::ffff:a01:203', cidrs), true);
      assert.equal(isTrustedSource('::ffff:11.1.2.3', cidrs), false);
    });

    it('trusts nothing with an empty list or a non-address', () => {
      assert.equal(isTrustedSource('10.0.0.1', []), false);
      assert.equal(isTrustedSource('', cidrs), false);
      assert.equal(isTrustedSource('localhost', cidrs), false);
    });

    it('refuses bad CIDR entries with CONFIG_INVALID', () => {
      for (const bad of [['10.0.0.0/33'], ['2001:db8::/129'], ['10.0.0/8'], ['host.example'], ['10.0.0.0/8/1'], ['10.0.0.0/x']]) {
        assert.throws(() => buildTrustList(bad), (e: unknown) => e instanceof ProxyError && e.code === 'CONFIG_INVALID', bad[0]);
      }
    });
  });
});
