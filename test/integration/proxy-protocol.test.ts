// Proves PROXY protocol on listeners (v1, v2, LOCAL, TLS, refusals, deadline) and PROXY v2 towards a Dovecot haproxy listener.
// Must not test HAProxy itself (haproxy.test.ts does) nor the header parser byte by byte (unit tests do).
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { DovecotInstance } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { withWorldAndProxy, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import { encodeProxyV2 } from '../../src/core/proxy-header.js';

const V2_LOCAL = Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([0x20, 0x00, 0x00, 0x00])]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function v1(src: string, dst = '127.0.0.1', sport = 55555, dport = 143): Buffer {
  return Buffer.from(`PROXY ${src.includes(':') ? 'TCP6' : 'TCP4'} ${src} ${dst} ${sport} ${dport}\r\n`, 'latin1');
}

function v2(src: string, dst = '127.0.0.1', sport = 55555, dport = 143): Buffer {
  return encodeProxyV2({ source: { address: src, port: sport }, destination: { address: dst, port: dport } });
}

/** Connect without reading anything: the PROXY header must come first. */
async function raw(port: number, localAddress?: string): Promise<LineClient> {
  return LineClient.connect(port, localAddress ? { localAddress } : {});
}

/** Poll Dovecot's log until `re` shows up (log lines are written asynchronously). */
async function waitForLog(backend: DovecotInstance, re: RegExp, timeoutMs = 4000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let log = '';
  while (Date.now() < deadline) {
    log = await backend.readLog();
    const line = log.split('\n').find((l) => re.test(l));
    if (line) return line;
    await sleep(100);
  }
  assert.fail(`no line matching ${re} in ${backend.name}'s log; tail:\n${log.split('\n').slice(-15).join('\n')}`);
}

/** A TLS client whose ClientHello leaves in the same write (one TCP segment on loopback) as `prefix`. */
function tlsAfterPrefix(port: number, prefix: Buffer): Promise<LineClient> {
  const sock: Socket = netConnect({ host: '127.0.0.1', port });
  let first = true;
  const carrier = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      sock.write(first ? Buffer.concat([prefix, chunk]) : chunk, cb);
      first = false;
    },
    read() { sock.resume(); },
    final(cb) { sock.end(); cb(); },
    destroy(err, cb) { sock.destroy(); cb(err); },
  });
  sock.on('data', (b: Buffer) => { if (!carrier.push(b)) sock.pause(); });
  sock.on('end', () => carrier.push(null));
  sock.on('error', (e) => carrier.destroy(e));
  return new Promise((resolve, reject) => {
    const t = tlsConnect({ socket: carrier, servername: 'localhost', rejectUnauthorized: false });
    t.once('secureConnect', () => { t.removeAllListeners('error'); resolve(LineClient.wrap(t)); });
    t.once('error', reject);
  });
}

function proxyLogsFor(proxy: RunningProxy, client: string, msg: string): Array<Record<string, unknown>> {
  return proxy.logs.filter((l) => l['client'] === client && l['msg'] === msg);
}

describe('PROXY protocol on listeners (real slapd + Dovecot)', function () {
  this.timeout(30_000);
  let plain: number;
  let implicit: number;
  let pop3: number;
  const pp = { proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32', '127.0.0.6'], proxyHeaderTimeoutMs: 400 };
  const env = withWorldAndProxy((r: RawConfig) => {
    r['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls', ...pp },
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit', ...pp },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'starttls', ...pp },
    ];
  }, {
    onReady: (_world, proxy) => {
      plain = proxy.port('imap', 'starttls');
      implicit = proxy.port('imap', 'implicit');
      pop3 = proxy.port('pop3', 'starttls');
    },
  });

  async function loginAlice(c: LineClient): Promise<void> {
    assert.match(await c.readLine(), /^\* OK /);
    assert.match(await c.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    await c.command('z', 'LOGOUT');
    c.close();
  }

  it('v1 header: Dovecot logs rip= of the announced client and the proxy logs it as the client', async () => {
    const c = await raw(plain);
    c.write(v1('203.0.113.9'));
    await loginAlice(c);
    assert.match(await waitForLog(env.world.backends.a, /imap-login: Info: Login: user=<alice>.*rip=203\.0\.113\.9,/), /lip=/);
    assert.equal(proxyLogsFor(env.proxy, '203.0.113.9', 'login ok').length, 1);
    assert.equal(proxyLogsFor(env.proxy, '203.0.113.9', 'login ok')[0]!['backend'], 'backend-a');
  });

  it('v2 header with an IPv6 client: the address reaches Dovecot (rip=2001:db8::7) and the session summary', async () => {
    const c = await raw(plain);
    c.write(v2('2001:db8::7', '2001:db8::1'));
    await loginAlice(c);
    await waitForLog(env.world.backends.a, /imap-login: Info: Login: user=<alice>.*rip=2001:db8::7,/);
    await sleep(100);
    const summary = proxyLogsFor(env.proxy, '2001:db8::7', 'session');
    assert.equal(summary.length, 1, JSON.stringify(env.proxy.logs.slice(-5)));
    assert.equal(summary[0]!['user'], 'alice');
  });

  it('header and the first IMAP command in one TCP segment: the command is not lost', async () => {
    const c = await raw(plain);
    c.write(Buffer.concat([v1('203.0.113.10'), Buffer.from('a CAPABILITY\r\n')]));
    assert.match(await c.readLine(), /^\* OK /);
    const r = await c.readUntil(/^a (OK|NO|BAD)/);
    assert.match(r, /^\* CAPABILITY .*IMAP4rev1/m);
    assert.match(r, /^a OK/m);
    assert.match(await c.command('b', `LOGIN alice ${env.world.users.alice.password}`), /^b OK/m);
    c.close();
    await waitForLog(env.world.backends.a, /Login: user=<alice>.*rip=203\.0\.113\.10,/);
  });

  it('header split over two writes (a slow sender) is reassembled', async () => {
    const c = await raw(plain);
    const h = v2('203.0.113.12');
    c.write(h.subarray(0, 7));
    await sleep(50);
    c.write(h.subarray(7));
    await loginAlice(c);
    await waitForLog(env.world.backends.a, /Login: user=<alice>.*rip=203\.0\.113\.12,/);
  });

  it('a v2 header with a 20 KB TLV arriving in many writes is reassembled, and the command after it is kept', async () => {
    const base = v2('203.0.113.14');
    const tlv = Buffer.concat([Buffer.from([0x04, 0x4e, 0x20]), Buffer.alloc(20_000)]); // PP2_TYPE_NOOP, 20,000 bytes
    const h = Buffer.concat([base, tlv]);
    h.writeUInt16BE(base.length - 16 + tlv.length, 14);
    const wire = Buffer.concat([h, Buffer.from('a CAPABILITY\r\n')]);
    const c = await raw(plain);
    for (let at = 0; at < wire.length; at += 1500) {
      c.write(wire.subarray(at, at + 1500));
      await new Promise((r) => setImmediate(r));
    }
    assert.match(await c.readLine(), /^\* OK /);
    assert.match(await c.readUntil(/^a (OK|NO|BAD)/), /^a OK/m);
    assert.match(await c.command('b', `LOGIN alice ${env.world.users.alice.password}`), /^b OK/m);
    c.close();
    await waitForLog(env.world.backends.a, /Login: user=<alice>.*rip=203\.0\.113\.14,/);
  });

  it('implicit TLS: header then ClientHello in one segment, and header then ClientHello separately', async () => {
    let c = await tlsAfterPrefix(implicit, v1('203.0.113.11', '127.0.0.1', 40000, 993));
    await loginAlice(c);
    await waitForLog(env.world.backends.a, /Login: user=<alice>.*rip=203\.0\.113\.11,/);

    const sock = netConnect({ host: '127.0.0.1', port: implicit });
    await new Promise((r) => sock.once('connect', r));
    sock.write(v2('203.0.113.13'));
    await sleep(50);
    const t = tlsConnect({ socket: sock, servername: 'localhost', rejectUnauthorized: false });
    await new Promise((r, j) => { t.once('secureConnect', r); t.once('error', j); });
    c = LineClient.wrap(t);
    await loginAlice(c);
    await waitForLog(env.world.backends.a, /Login: user=<alice>.*rip=203\.0\.113\.13,/);
  });

  it('POP3 listener: v1 header, USER/PASS, Dovecot pop3-login logs the client (XCLIENT)', async () => {
    const c = await raw(pop3);
    c.write(v1('203.0.113.14', '127.0.0.1', 1234, 110));
    assert.match(await c.readLine(), /^\+OK/);
    c.send('USER alice');
    assert.match(await c.readLine(), /^\+OK/);
    c.send(`PASS ${env.world.users.alice.password}`);
    assert.match(await c.readLine(), /^\+OK/);
    c.send('QUIT');
    c.close();
    await waitForLog(env.world.backends.a, /pop3-login: Info: Login: user=<alice>.*rip=203\.0\.113\.14,/);
  });

  it('v2 LOCAL (a health check): the connection keeps the real peer address', async () => {
    const c = await raw(plain, '127.0.0.6');
    c.write(V2_LOCAL);
    await loginAlice(c);
    await waitForLog(env.world.backends.a, /Login: user=<alice>.*rip=127\.0\.0\.6,/);
    assert.equal(proxyLogsFor(env.proxy, '127.0.0.6', 'login ok').length, 1);
  });

  it('v1 UNKNOWN: the connection keeps the real peer address', async () => {
    const c = await raw(plain);
    c.write('PROXY UNKNOWN\r\na CAPABILITY\r\n');
    assert.match(await c.readLine(), /^\* OK /);
    assert.match(await c.readUntil(/^a (OK|NO|BAD)/), /^a OK/m);
    c.close();
  });

  it('an untrusted source is refused with one protocol line and closed, even with a valid header', async () => {
    for (const port of [plain, pop3]) {
      const c = await raw(port, '127.0.0.5');
      c.write(v1('203.0.113.66'));
      const line = await c.readLine();
      assert.equal(line, port === plain ? '* BYE Connection refused' : '-ERR Connection refused');
      await waitClosed(c);
      assert.equal(c.pending().length, 0);
    }
    const warn = env.proxy.logs.filter((l) => l['msg'] === 'PROXY header from untrusted source refused');
    assert.ok(warn.some((l) => l['client'] === '127.0.0.5'), 'refusal logged with the peer address');
    assert.equal(proxyLogsFor(env.proxy, '203.0.113.66', 'session').length, 0);
  });

  it('a refused client that ignores the close (half-open) still loses the connection within about a second', async () => {
    const probe = async (local: string, payload: string): Promise<void> => {
      const s = netConnect({ host: '127.0.0.1', port: plain, localAddress: local, allowHalfOpen: true });
      let got = '';
      let ended = false;
      let gone = false;
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('end', () => (ended = true));
      s.on('error', () => (gone = true));
      s.on('close', () => (gone = true));
      await new Promise((r) => s.once('connect', r));
      if (payload) s.write(payload);
      for (let i = 0; i < 50 && !ended; i++) await sleep(20);
      assert.ok(ended, `server ended its side (got ${JSON.stringify(got)})`);
      await sleep(1300);
      // The proxy must have released the socket: a write now meets a reset instead of a half-open peer.
      s.write('still there?\r\n');
      await sleep(100);
      s.write('still there?\r\n');
      for (let i = 0; i < 25 && !gone; i++) await sleep(20);
      s.destroy();
      assert.ok(gone, `proxy still holds the half-open connection from ${local}`);
    };
    await Promise.all([probe('127.0.0.5', ''), probe('127.0.0.1', 'garbage\r\n')]);
  });

  it('bytes that are not a PROXY header are answered with * BYE Invalid PROXY header and closed', async () => {
    const c = await raw(plain);
    c.write('a LOGIN alice secret\r\n');
    assert.equal(await c.readLine(), '* BYE Invalid PROXY header');
    await waitClosed(c);
    const tls = await raw(implicit);
    tls.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05])); // a TLS record where the header should be
    assert.equal(await tls.readLine(), '* BYE Invalid PROXY header');
    await waitClosed(tls);
    const bad = await raw(plain);
    bad.write('PROXY TCP4 203.0.113.9 nonsense 1 2\r\n');
    assert.equal(await bad.readLine(), '* BYE Invalid PROXY header');
    await waitClosed(bad);
  });

  it('no header (or half a header) within proxyHeaderTimeoutMs: refused and closed', async () => {
    const t0 = Date.now();
    const silent = await raw(plain);
    assert.equal(await silent.readLine(3000), '* BYE Invalid PROXY header');
    const waited = Date.now() - t0;
    assert.ok(waited >= 350 && waited < 2000, `refused after ${waited} ms (deadline 400 ms)`);
    await waitClosed(silent);
    const half = await raw(plain);
    half.write('PROXY TCP4 203.0.1');
    assert.equal(await half.readLine(3000), '* BYE Invalid PROXY header');
    await waitClosed(half);
    const reasons = env.proxy.logs.filter((l) => l['msg'] === 'invalid PROXY header').map((l) => l['reason']);
    assert.ok(reasons.includes('no PROXY header in time'), JSON.stringify(reasons));
  });
});

async function waitClosed(c: LineClient, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!c.isClosed) {
    if (Date.now() > deadline) assert.fail('connection still open');
    await sleep(20);
  }
}

describe('PROXY v2 towards a Dovecot haproxy listener (forwardClientAddress: proxy-v2)', function () {
  this.timeout(30_000);
  const env = withWorldAndProxy((r: RawConfig, world) => {
    r['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
    ];
    const backends = r['backends'] as Record<string, Record<string, unknown>>;
    backends['backend-a'] = { ...backends['backend-a'], imap: { port: world.backends.a.ports.imapHaproxy, tls: 'none' }, forwardClientAddress: 'proxy-v2' };
    r['health'] = { enabled: true, intervalMs: 200, timeoutMs: 500, rise: 1, fall: 1 };
  });

  it('the health probe sends PROXY v2 LOCAL first, so the haproxy listener greets it and backend-a imap is up', async () => {
    const imapState = () => env.proxy.app.monitor.snapshot().find((b) => b.backend === 'backend-a')?.endpoints.find((e) => e.protocol === 'imap');
    for (let i = 0; i < 40 && imapState()?.lastProbe === undefined; i++) await sleep(50);
    await sleep(600); // a few more probes: a probe that got no greeting would have turned it down (fall 1)
    const ep = imapState();
    assert.equal(ep?.state, 'up', JSON.stringify(ep));
    assert.match(ep?.lastProbe?.identity ?? '', /Dovecot/);
  });

  it('a direct client from 127.0.0.31: Dovecot logs rip=127.0.0.31 from the PROXY v2 header', async () => {
    const c = await LineClient.connect(env.proxy.port('imap', 'starttls'), { localAddress: '127.0.0.31' });
    assert.match(await c.readLine(), /^\* OK /);
    const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
    assert.match(r, /^a OK/m, r);
    assert.match(await c.command('s', 'SELECT INBOX'), /^s OK/m);
    await c.command('z', 'LOGOUT');
    c.close();
    await waitForLog(env.world.backends.a, /imap-login: Info: Login: user=<alice>.*rip=127\.0\.0\.31,/);
  });

  it('chained: IPv6 client announced to the proxy by PROXY v1 over TLS reaches Dovecot by PROXY v2 (rip=2001:db8::42)', async () => {
    const c = await tlsAfterPrefix(env.proxy.port('imap', 'implicit'), v1('2001:db8::42', '2001:db8::1', 50000, 993));
    assert.match(await c.readLine(), /^\* OK /);
    assert.match(await c.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    await c.command('z', 'LOGOUT');
    c.close();
    await waitForLog(env.world.backends.a, /imap-login: Info: Login: user=<alice>.*rip=2001:db8::42,/);
  });

  it('a TLS client is announced with the SSL TLV: Dovecot counts it secured (disable_plaintext_auth = yes for 192.0.2.0/24)', async () => {
    const c = await tlsAfterPrefix(env.proxy.port('imap', 'implicit'), v2('192.0.2.10', '127.0.0.1', 50001, 993));
    assert.match(await c.readLine(), /^\* OK /);
    const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
    assert.match(r, /^a OK/m, r);
    await c.command('z', 'LOGOUT');
    c.close();
    assert.match(await waitForLog(env.world.backends.a, /imap-login: Info: Login: user=<alice>.*rip=192\.0\.2\.10,/), /, secured,/);
  });

  it('a plaintext client is announced without it: that Dovecot refuses the plaintext login, and the client gets NO', async () => {
    const c = await raw(env.proxy.port('imap', 'none'));
    c.write(v1('192.0.2.11'));
    assert.match(await c.readLine(), /^\* OK /);
    const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
    assert.match(r, /^a NO/m, r);
    c.close();
    await waitForLog(env.world.backends.a, /imap-login: .*rip=192\.0\.2\.11,/);
    const log = await env.world.backends.a.readLog();
    assert.doesNotMatch(log, /Login: user=<alice>.*rip=192\.0\.2\.11,/);
  });
});
