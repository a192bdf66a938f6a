// Proves loop protection (own listener by name/port/SMTP, x-proxy-ttl and LMTP XCLIENT TTL rings of two proxies) and sourceAddresses (Dovecot rip=) with real Dovecot.
// Must not test routing or health beyond that.
import assert from 'node:assert/strict';
import { startWorld, type World } from './harness/world.js';
import { allocatePorts } from './harness/ports.js';
import { LineClient } from './harness/line-client.js';
import { startProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import { registry } from '../../src/metrics.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Connections accepted so far on this process's listeners of `protocol` (mailproxy_connections_total). */
async function connections(protocol: 'imap' | 'lmtp'): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'mailproxy_connections_total');
  return m?.values.filter((v) => v.labels['protocol'] === protocol).reduce((a, v) => a + v.value, 0) ?? 0;
}

/** LHLO on an LMTP listener; the 250 reply's lines. */
async function lhlo(port: number): Promise<{ c: LineClient; caps: string }> {
  const c = await LineClient.connect(port);
  assert.match(await c.readLine(), /^220 /);
  c.send('LHLO upstream.example');
  return { c, caps: await c.readUntil(/^250 /m) };
}

async function login(port: number, user: { uid: string; password: string }, pre?: string): Promise<{ c: LineClient; reply: string }> {
  const c = await LineClient.connect(port);
  await c.readLine();
  if (pre) await c.command('i', pre);
  return { c, reply: await c.command('a', `LOGIN ${user.uid} ${user.password}`, 10_000) };
}

describe('loop protection and source addresses (real Dovecot, in-process proxies)', function () {
  this.timeout(60_000);
  let world: World;
  const proxies: RunningProxy[] = [];
  const start = async (mutate: (raw: RawConfig) => void) => {
    const p = await startProxy(worldConfig(world, (raw) => { raw['log'] = { level: 'info' }; mutate(raw); }));
    proxies.push(p);
    return p;
  };
  const imapOnly = (port: number) => [{ protocol: 'imap', address: '127.0.0.1', port, tls: 'none' }];
  const backendAt = (port: number, extra: Record<string, unknown> = {}) => ({ host: '127.0.0.1', imap: { port }, trustsProxy: true, forwardClientAddress: 'native', ...extra });

  before(async () => { world = await startWorld(); });
  after(async () => {
    for (const p of proxies) await p.stop().catch(() => undefined);
    await world?.stop();
  });

  it('a backend host name that leads to our own listener: NO [UNAVAILABLE], logged, one connection, no storm', async () => {
    const [port] = await allocatePorts(1);
    const p = await start((raw) => {
      raw['listeners'] = imapOnly(port!);
      (raw['backends'] as Record<string, unknown>)['backend-a'] = { host: 'localhost', imap: { port }, trustsProxy: true };
    });
    const before = await connections('imap');
    const { c, reply } = await login(port!, world.users.alice);
    assert.match(reply, /^a NO \[UNAVAILABLE\]/m);
    await sleep(300);
    assert.ok(await connections('imap') - before <= 2, 'the client and at most the one connection to ourselves that was refused');
    assert.ok(p.logs.some((l) => l['code'] === 'ROUTE_LOOP'), 'login failed with ROUTE_LOOP in the log');
    c.close();
  });

  it('SMTP submission to a backend that is our own submission listener: 451 at MAIL, no storm', async () => {
    const [port] = await allocatePorts(1);
    const p = await start((raw) => {
      raw['listeners'] = [{ protocol: 'submission', address: '127.0.0.1', port, tls: 'none' }];
      raw['smtp'] = { requireTlsForAuth: false };
      (raw['backends'] as Record<string, Record<string, unknown>>)['backend-a'] = { host: 'localhost', submission: { port }, trustsProxy: true };
    });
    const c = await LineClient.connect(port!);
    assert.match(await c.readLine(), /^220 /);
    c.send('EHLO client.example');
    await c.readUntil(/^250 /);
    const { alice } = world.users;
    c.send(`AUTH PLAIN ${Buffer.from(`\0${alice.uid}\0${alice.password}`).toString('base64')}`);
    assert.match(await c.readLine(10_000), /^235 /);
    c.send(`MAIL FROM:<${alice.uid}@example.com>`);
    assert.match(await c.readLine(10_000), /^4\d\d /);
    await sleep(300);
    assert.ok(p.logs.some((l) => /ROUTE_LOOP|route loops back/.test(JSON.stringify(l))), 'logged as a route loop');
    c.close();
  });

  it('a backend port that is our own listener bound at run time (port 0, then reload): refused before connecting', async () => {
    const p = await start((raw) => { raw['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }]; });
    const own = p.port('imap', 'none');
    await p.app.reload(worldConfig(world, (raw) => {
      raw['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
      (raw['backends'] as Record<string, unknown>)['backend-a'] = backendAt(own);
    }));
    const before = await connections('imap');
    const { c, reply } = await login(own, world.users.alice);
    assert.match(reply, /^a NO \[UNAVAILABLE\]/m);
    await sleep(200);
    assert.equal(await connections('imap') - before, 1, 'only the client: the proxy never dialled itself');
    c.close();
  });

  it('x-proxy-ttl: a trusted upstream\'s hop count is honoured; a ring of two proxies stops after proxyTtl hops', async () => {
    const [pa, pb] = await allocatePorts(2);
    const trusted = { proxyTtl: 5, trustedNetworks: ['127.0.0.0/8'] };
    // B serves from Dovecot; A sends backend-a logins to B.
    const b = await start((raw) => { raw['listeners'] = imapOnly(pb!); raw['loopProtection'] = trusted; });
    const a = await start((raw) => {
      raw['listeners'] = imapOnly(pa!); raw['loopProtection'] = trusted;
      (raw['backends'] as Record<string, unknown>)['backend-a'] = backendAt(pb!);
    });
    const chain = await login(pa!, world.users.alice);
    assert.match(chain.reply, /^a OK/m, 'A → B → Dovecot works');
    chain.c.close();
    // A client that says it is one hop from the end is refused (127.0.0.1 is trusted here).
    const last = await login(pb!, world.users.alice, 'ID ("x-proxy-ttl" "1")');
    assert.match(last.reply, /^a NO \[UNAVAILABLE\]/m);
    last.c.close();

    // Ring: B now sends backend-a logins back to A. A(5→4) → B(4→3) → A(3→2) → B(2→1) → A refuses.
    await b.app.reload(worldConfig(world, (raw) => {
      raw['log'] = { level: 'info' };
      raw['listeners'] = imapOnly(pb!); raw['loopProtection'] = trusted;
      (raw['backends'] as Record<string, unknown>)['backend-a'] = backendAt(pa!);
    }));
    const before = await connections('imap');
    const [fromA, fromB] = [a.logs.length, b.logs.length];
    const ring = await login(pa!, world.users.alice);
    assert.match(ring.reply, /^a NO \[UNAVAILABLE\]/m);
    await sleep(500);
    assert.equal(await connections('imap') - before, 5, 'client + 4 hops, then the loop is cut');
    const loops = [...a.logs.slice(fromA), ...b.logs.slice(fromB)].filter((l) => l['code'] === 'ROUTE_LOOP');
    assert.equal(loops.length, 1, 'one proxy refused; the others failed on its temporary error');
    ring.c.close();
  });

  it('SMTP/LMTP XCLIENT TTL: offered to trusted upstreams only, counted down, a ring of two LMTP listeners stops after proxyTtl hops', async () => {
    const [pa, pb, pu] = await allocatePorts(3);
    const trusted = { proxyTtl: 5, trustedNetworks: ['127.0.0.0/8'] };
    const lmtpOnly = (port: number) => [{ protocol: 'lmtp', address: '127.0.0.1', port, tls: 'none' }];
    const lmtpAt = (port: number) => ({ host: '127.0.0.1', lmtp: { port }, trustsProxy: true, forwardClientAddress: 'native' });
    const rcpt = async (c: LineClient) => {
      c.send('MAIL FROM:<sender@elsewhere.example>');
      assert.match(await c.readLine(10_000), /^250 /);
      c.send(`RCPT TO:<${world.users.alice.mail}>`);
      return c.readLine(15_000);
    };
    // B delivers to Dovecot; A sends backend-a mail to B (whose listener trusts A and advertises TTL to it).
    const b = await start((raw) => { raw['listeners'] = lmtpOnly(pb!); raw['loopProtection'] = trusted; });
    const a = await start((raw) => {
      raw['listeners'] = lmtpOnly(pa!); raw['loopProtection'] = trusted;
      (raw['backends'] as Record<string, unknown>)['backend-a'] = lmtpAt(pb!);
    });
    const chain = await lhlo(pa!);
    assert.match(chain.caps, /^250[- ]XCLIENT NAME ADDR PORT PROTO HELO TTL\b/m, 'a trusted client is offered XCLIENT with TTL');
    assert.match(await rcpt(chain.c), /^250 /, 'A → B → Dovecot LMTP works');
    chain.c.close();

    // An upstream that says one hop is left: XCLIENT is taken (220, new greeting), the recipient refused with 451.
    const last = await lhlo(pb!);
    last.c.send('XCLIENT ADDR=192.0.2.7 PORT=4711 TTL=1');
    assert.match(await last.c.readLine(), /^220 /);
    last.c.send('LHLO upstream.example');
    await last.c.readUntil(/^250 /m);
    assert.match(await rcpt(last.c), /^451 4\.3\.0 /);
    last.c.close();
    // A malformed TTL is a syntax error; nothing changes.
    const bad = await lhlo(pb!);
    bad.c.send('XCLIENT TTL=lots');
    assert.match(await bad.c.readLine(), /^501 /);
    bad.c.close();

    // An untrusted client is not offered XCLIENT and cannot use it.
    await start((raw) => { raw['listeners'] = lmtpOnly(pu!); });
    const untrusted = await lhlo(pu!);
    assert.doesNotMatch(untrusted.caps, /XCLIENT/);
    untrusted.c.send('XCLIENT TTL=1');
    assert.match(await untrusted.c.readLine(), /^5\d\d /);
    assert.match(await rcpt(untrusted.c), /^250 /, 'its TTL did nothing');
    untrusted.c.close();

    // Ring: B sends backend-a mail back to A. A(5→4) → B(4→3) → A(3→2) → B(2→1) → A refuses at RCPT.
    await b.app.reload(worldConfig(world, (raw) => {
      raw['log'] = { level: 'info' };
      raw['listeners'] = lmtpOnly(pb!); raw['loopProtection'] = trusted;
      (raw['backends'] as Record<string, unknown>)['backend-a'] = lmtpAt(pa!);
    }));
    const before = await connections('lmtp');
    const [fromA, fromB] = [a.logs.length, b.logs.length];
    const ring = await lhlo(pa!);
    assert.match(await rcpt(ring.c), /^451 /);
    await sleep(500);
    assert.equal(await connections('lmtp') - before, 5, 'client + 4 hops, then the loop is cut');
    const loops = [...a.logs.slice(fromA), ...b.logs.slice(fromB)].filter((l) => /hop count spent \(XCLIENT TTL 1\)/.test(String(l['detail'])));
    assert.equal(loops.length, 1, 'one proxy refused; the others failed on its temporary error');
    ring.c.close();
  });

  it('submission: a trusted upstream\'s spent XCLIENT TTL is refused at MAIL with 451', async () => {
    const [port] = await allocatePorts(1);
    await start((raw) => {
      raw['listeners'] = [{ protocol: 'submission', address: '127.0.0.1', port, tls: 'none' }];
      raw['smtp'] = { requireTlsForAuth: false };
      raw['loopProtection'] = { trustedNetworks: ['127.0.0.1/32'] };
    });
    const { alice } = world.users;
    const session = async (xclient?: string) => {
      const c = await LineClient.connect(port!);
      assert.match(await c.readLine(), /^220 /);
      c.send('EHLO upstream.example');
      assert.match(await c.readUntil(/^250 /m), /^250[- ]XCLIENT .*\bTTL\b/m);
      if (xclient) {
        c.send(xclient);
        assert.match(await c.readLine(), /^220 /);
        c.send('EHLO upstream.example');
        await c.readUntil(/^250 /m);
      }
      c.send(`AUTH PLAIN ${Buffer.from(`\0${alice.uid}\0${alice.password}`).toString('base64')}`);
      assert.match(await c.readLine(10_000), /^235 /);
      c.send(`MAIL FROM:<${alice.mail}>`);
      const r = await c.readLine(10_000);
      c.close();
      return r;
    };
    assert.match(await session('XCLIENT ADDR=192.0.2.7 PORT=4711 TTL=1'), /^451 4\.3\.0 /);
    assert.match(await session('XCLIENT ADDR=192.0.2.7 PORT=4711 TTL=3'), /^250 /, 'hops left: Dovecot submission takes it');
    // The client the upstream forwarded is the one Dovecot hears of (XCLIENT ADDR from us), not the upstream's address.
    let log = '';
    for (let i = 0; i < 40 && !/user=<alice>.*rip=192\.0\.2\.7/.test(log); i++) { await sleep(100); log = await world.backends.a.readLog(); }
    assert.match(log, /user=<alice>.*rip=192\.0\.2\.7/, log.slice(-1500));
    assert.match(await session(), /^250 /);
  });

  it('submission: failed logins count against the client a trusted upstream forwarded, not the upstream (no shared penalty)', async () => {
    const [port] = await allocatePorts(1);
    await start((raw) => {
      raw['listeners'] = [{ protocol: 'submission', address: '127.0.0.1', port, tls: 'none' }];
      raw['smtp'] = { requireTlsForAuth: false, authFailureDelayMs: 200, authFailureMaxDelayMs: 3200 };
      raw['loopProtection'] = { trustedNetworks: ['127.0.0.1/32'] };
    });
    /** One wrong password for the client `addr` behind the upstream: ms until the 535. */
    const failFor = async (addr: string) => {
      const c = await LineClient.connect(port!);
      assert.match(await c.readLine(), /^220 /);
      c.send('EHLO upstream.example');
      await c.readUntil(/^250 /m);
      c.send(`XCLIENT ADDR=${addr} PORT=4711`);
      assert.match(await c.readLine(), /^220 /);
      c.send('EHLO upstream.example');
      await c.readUntil(/^250 /m);
      const t = performance.now();
      c.send(`AUTH PLAIN ${Buffer.from(`\0${world.users.alice.uid}\0wrong-password`).toString('base64')}`);
      assert.match(await c.readLine(10_000), /^535 /);
      c.close();
      return performance.now() - t;
    };
    const guesser = [await failFor('192.0.2.7'), await failFor('192.0.2.7'), await failFor('192.0.2.7'), await failFor('192.0.2.7')];
    assert.ok(guesser[3]! >= 1500, `the guesser's fourth failure waits 1.6 s: ${guesser.map(Math.round)}`);
    const other = await failFor('192.0.2.8');
    assert.ok(other < 1000, `another client behind the same upstream starts at the base delay, not the guesser's: ${Math.round(other)} ms (guesser ${guesser.map(Math.round)})`);
  });

  it('an untrusted client cannot shorten the hop count (x-proxy-ttl ignored)', async () => {
    const [port] = await allocatePorts(1);
    await start((raw) => { raw['listeners'] = imapOnly(port!); });
    const r = await login(port!, world.users.alice, 'ID ("x-proxy-ttl" "1")');
    assert.match(r.reply, /^a OK/m);
    r.c.close();
  });

  it('sourceAddresses: backend connections alternate between 127.0.0.2 and 127.0.0.3 (Dovecot logs them as rip=)', async () => {
    const [port] = await allocatePorts(1);
    await start((raw) => {
      raw['listeners'] = imapOnly(port!);
      const backends = raw['backends'] as Record<string, Record<string, unknown>>;
      backends['backend-b'] = { ...backends['backend-b'], trustsProxy: false, forwardClientAddress: 'none', sourceAddresses: ['127.0.0.2', '127.0.0.3'] };
    });
    const sessions = [];
    for (let i = 0; i < 4; i++) {
      const s = await login(port!, world.users.bob);
      assert.match(s.reply, /^a OK/m);
      sessions.push(s.c);
    }
    let log = '';
    const count = (ip: string) => (log.match(new RegExp(`Login: user=<bob>, method=PLAIN, rip=${ip.replace(/\./g, '\\.')},`, 'g')) ?? []).length;
    for (let i = 0; i < 40 && count('127.0.0.2') + count('127.0.0.3') < 4; i++) { await sleep(100); log = await world.backends.b.readLog(); }
    assert.equal(count('127.0.0.2'), 2, log.slice(-2000));
    assert.equal(count('127.0.0.3'), 2);
    for (const c of sessions) c.close();
  });
});
