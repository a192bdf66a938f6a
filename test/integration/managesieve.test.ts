// Proves the ManageSieve proxy against real Dovecot Pigeonhole: sieve-connect (a real client) uploads, activates and lists a script through the proxy
// (STARTTLS, AUTHENTICATE PLAIN), the script is read back from the backend's sieve directory; raw pre-login refusals, OAUTHBEARER, routing, health probe;
// hop count (XCLIENT TTL) from trusted upstreams and towards Pigeonhole, a ring of two proxies cut.
// Must not test OAuth validation details (oauth-login.test.ts) nor IMAP/POP3.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineClient } from './harness/line-client.js';
import type { World } from './harness/world.js';
import { startProxy, withWorldAndProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import { allocatePorts } from './harness/ports.js';
import { registry } from '../../src/metrics.js';
import { routeForBackend } from '../../src/directory/backends.js';
import { probeOnce } from '../../src/health/probe.js';
import { systemClock } from '../../src/core/clock.js';
import { encodePlain, encodeTokenResponse } from '../../src/proxy/sasl.js';
import { IDP_AUDIENCE, IDP_ISSUER } from './harness/identity-provider.js';

const SCRIPT = 'require ["fileinto"];\r\nif header :contains "subject" "[proxy]" {\r\n  fileinto "INBOX";\r\n}\r\n';

/** Run sieve-connect with the password on fd 3 (never on the command line); resolves with its output. */
function sieveConnect(world: World, port: number, user: string, password: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sieve-connect', ['--server', '127.0.0.1', '--port', String(port), '--user', user, '--authmech', 'PLAIN', '--passwordfd', '3',
      '--tlscafile', world.tls.caPath, '--tlshostname', 'localhost', ...args], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    (child.stdio[3] as NodeJS.WritableStream).end(`${password}\n`);
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`sieve-connect timed out: ${out}`)); }, 20_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, out }); });
  });
}

/** Read a ManageSieve response up to its OK/NO/BYE line. */
const reply = (c: LineClient, timeoutMs = 5000) => c.readUntil(/^(OK|NO|BYE)\b.*$/m, timeoutMs);

/** Connect, STARTTLS, and read the capabilities after the handshake: a client ready to AUTHENTICATE. */
async function tlsSession(world: World, port: number): Promise<LineClient> {
  const c = await LineClient.connect(port);
  await reply(c);
  c.write('STARTTLS\r\n');
  assert.match(await reply(c), /^OK/m);
  const t = await c.startTls(readFileSync(world.tls.caPath));
  await reply(t);
  return t;
}

describe('ManageSieve proxy (real Dovecot Pigeonhole)', function () {
  this.timeout(60_000);
  const ctx = withWorldAndProxy((raw, world) => {
    (raw['listeners'] as unknown[]).push({ protocol: 'sieve', address: '127.0.0.1', port: 0, tls: 'starttls' });
    raw['sieve'] = { limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 100, maxBadCommands: 4 } };
    for (const [name, d] of [['backend-a', world.backends.a], ['backend-b', world.backends.b]] as const) {
      (raw['backends'] as Record<string, Record<string, unknown>>)[name]!['sieve'] = { port: d.ports.sieve, tls: 'none' };
    }
    raw['oauth'] = { userClaim: 'email', tlsCa: readFileSync(world.tls.caPath, 'utf8'), mechanisms: ['OAUTHBEARER'], jwt: { jwksFile: world.idp!.jwksFile, issuer: IDP_ISSUER, audience: IDP_AUDIENCE, algorithms: ['RS256'] } };
  }, { world: { sieve: true, oauth: true } });

  it('sieve-connect uploads, activates and lists a script through the proxy; the backend holds it byte for byte', async () => {
    const { world, proxy } = ctx;
    const port = proxy.port('sieve', 'starttls');
    const local = join(world.dir, 'proxy-test.sieve');
    writeFileSync(local, SCRIPT);
    const alice = world.users.alice;
    const up = await sieveConnect(world, port, alice.uid, alice.password, ['--upload', '--localsieve', local, '--remotesieve', 'proxytest']);
    assert.equal(up.code, 0, up.out);
    const act = await sieveConnect(world, port, alice.uid, alice.password, ['--activate', '--remotesieve', 'proxytest']);
    assert.equal(act.code, 0, act.out);
    const list = await sieveConnect(world, port, alice.uid, alice.password, ['--list']);
    assert.equal(list.code, 0, list.out);
    assert.match(list.out, /^"proxytest" ACTIVE$/m);
    assert.doesNotMatch(up.out + list.out, /violates/i, 'sieve-connect found nothing to complain about in the capabilities');
    const home = join(world.backends.a.mailRoot, alice.uid);
    assert.equal(readFileSync(join(home, 'sieve', 'proxytest.sieve'), 'utf8'), SCRIPT);
    assert.match(readlinkSync(join(home, '.dovecot.sieve')), /proxytest\.sieve$/);
    assert.ok(!proxy.logText().includes(alice.password), 'no password in the proxy log');
  });

  it('before login: capabilities with STARTTLS and no SASL in clear, refusals, then STARTTLS and a wrong password', async () => {
    const { world, proxy } = ctx;
    const c = await LineClient.connect(proxy.port('sieve', 'starttls'));
    const greeting = await reply(c);
    assert.match(greeting, /^"SASL" ""$/m);
    assert.match(greeting, /^"STARTTLS"$/m);
    c.write('LISTSCRIPTS\r\n');
    assert.match(await reply(c), /^NO "Authenticate first"/m);
    c.write(`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'x')}"\r\n`);
    assert.match(await reply(c), /^NO \(ENCRYPT-NEEDED\)/m);
    c.write('STARTTLS\r\n');
    assert.match(await reply(c), /^OK/m);
    const t = await c.startTls(readFileSync(world.tls.caPath));
    const caps = await reply(t);
    assert.match(caps, /^"SASL" "PLAIN LOGIN OAUTHBEARER"$/m);
    t.write(`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'wrong')}"\r\n`);
    assert.match(await reply(t), /^NO "Authentication failed"/m);
    t.write('LOGOUT\r\n');
    assert.match(await reply(t), /^OK "Logout completed"/m);
    t.close();
  });

  it('raw PUTSCRIPT / SETACTIVE / LISTSCRIPTS for bob reach backend-b; a pipelined command after AUTHENTICATE is answered by the backend', async () => {
    const { world, proxy } = ctx;
    const t = await tlsSession(world, proxy.port('sieve', 'starttls'));
    const bob = world.users.bob;
    t.write(`AUTHENTICATE "PLAIN" "${encodePlain(bob.uid, bob.password)}"\r\nLISTSCRIPTS\r\n`);
    assert.match(await reply(t), /^OK/m);
    assert.match(await reply(t), /^OK "Listscripts completed."/m);
    const body = Buffer.from('keep;\r\n');
    t.write(`PUTSCRIPT "raw" {${body.length}+}\r\n`);
    t.write(Buffer.concat([body, Buffer.from('\r\n')]));
    assert.match(await reply(t), /^OK/m);
    t.write('SETACTIVE "raw"\r\n');
    assert.match(await reply(t), /^OK/m);
    t.write('LISTSCRIPTS\r\n');
    assert.match(await reply(t), /^"raw" ACTIVE$/m);
    t.write('LOGOUT\r\n');
    await reply(t);
    t.close();
    assert.equal(readFileSync(join(world.backends.b.mailRoot, bob.uid, 'sieve', 'raw.sieve'), 'utf8'), 'keep;\r\n');
  });

  it('AUTHENTICATE OAUTHBEARER with a token (validated against the JWKS file) logs in; the token is passed on to Pigeonhole', async () => {
    const { world, proxy } = ctx;
    const t = await tlsSession(world, proxy.port('sieve', 'starttls'));
    const token = await world.idp!.token('alice', world.users.alice.mail);
    t.write(`AUTHENTICATE "OAUTHBEARER" "${encodeTokenResponse('OAUTHBEARER', '', token)}"\r\n`);
    assert.match(await reply(t), /^OK/m);
    t.write('LISTSCRIPTS\r\n');
    assert.match(await reply(t), /^OK/m);
    t.close();
    assert.match(await world.backends.a.readLog(), /managesieve-login: Info: Login: user=<alice>, method=OAUTHBEARER/);
    const bad = await world.idp!.token('alice', world.users.alice.mail, { expiresIn: -100 });
    const u = await tlsSession(world, proxy.port('sieve', 'starttls'));
    u.write(`AUTHENTICATE "OAUTHBEARER" "${encodeTokenResponse('OAUTHBEARER', '', bad)}"\r\n`);
    const challenge = await u.readLine();
    assert.equal(JSON.parse(Buffer.from(challenge.replace(/"/g, ''), 'base64').toString())['status'], 'invalid_token');
    u.write('"AQ=="\r\n');
    assert.match(await reply(u), /^NO "Authentication failed"/m);
    u.close();
  });

  it('XCLIENT TTL: taken from trusted upstreams, counted down, sent to Pigeonhole with the forwarded client; a ring of two proxies stops after 4 hops', async () => {
    const { world } = ctx;
    const [pa, pb] = await allocatePorts(2);
    const trusted = { proxyTtl: 5, trustedNetworks: ['127.0.0.0/8'] };
    const proxies: RunningProxy[] = [];
    const sieveAt = (port: number) => ({ host: '127.0.0.1', sieve: { port, tls: 'none' }, trustsProxy: true, forwardClientAddress: 'native' });
    const configFor = (port: number, backendA?: number) => worldConfig(world, (raw: RawConfig) => {
      raw['log'] = { level: 'info' };
      raw['listeners'] = [{ protocol: 'sieve', address: '127.0.0.1', port, tls: 'none' }];
      raw['sieve'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 100 } };
      raw['loopProtection'] = trusted;
      const backends = raw['backends'] as Record<string, Record<string, unknown>>;
      backends['backend-a'] = backendA === undefined ? { ...backends['backend-a'], sieve: { port: world.backends.a.ports.sieve, tls: 'none' } } : sieveAt(backendA);
    });
    const sieveConnections = async () => (await registry.getMetricsAsJSON()).find((x) => x.name === 'mailproxy_connections_total')
      ?.values.filter((v) => v.labels['protocol'] === 'sieve').reduce((a, v) => a + v.value, 0) ?? 0;
    const { alice } = world.users;
    const login = async (port: number, xclient?: string) => {
      const c = await LineClient.connect(port);
      const caps = await reply(c);
      if (xclient) { c.write(`${xclient}\r\n`); assert.match(await reply(c), /^OK "Updated"/m); }
      c.write(`AUTHENTICATE "PLAIN" "${encodePlain(alice.uid, alice.password)}"\r\n`);
      const r = await reply(c, 15_000);
      c.close();
      return { caps, r };
    };
    try {
      const b = await startProxy(configFor(pb!));
      proxies.push(b);
      const a = await startProxy(configFor(pa!, pb!));
      proxies.push(a);
      const chain = await login(pa!);
      assert.match(chain.caps, /^"XCLIENT"$/m, 'a trusted client is offered XCLIENT');
      assert.match(chain.r, /^OK/m, 'A → B → Pigeonhole works (A sent XCLIENT TTL to B)');
      // An upstream that names its client: Pigeonhole hears of that client (rip=), one hop less.
      assert.match((await login(pb!, 'XCLIENT ADDR=192.0.2.7 PORT=4711 TTL=3')).r, /^OK/m);
      let log = '';
      for (let i = 0; i < 40 && !/managesieve-login: Info: Login: user=<alice>, .*rip=192\.0\.2\.7/.test(log); i++) { await new Promise((r) => setTimeout(r, 100)); log = await world.backends.a.readLog(); }
      assert.match(log, /managesieve-login: Info: Login: user=<alice>, .*rip=192\.0\.2\.7/, log.slice(-1500));
      // One hop left: refused with the temporary error.
      assert.match((await login(pb!, 'XCLIENT TTL=1')).r, /^NO \(TRYLATER\)/m);

      // Ring: B sends backend-a logins back to A. A(5→4) → B(4→3) → A(3→2) → B(2→1) → A refuses.
      await b.app.reload(configFor(pb!, pa!));
      const before = await sieveConnections();
      const [fromA, fromB] = [a.logs.length, b.logs.length];
      assert.match((await login(pa!)).r, /^NO/m);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(await sieveConnections() - before, 5, 'client + 4 hops, then the loop is cut');
      assert.equal([...a.logs.slice(fromA), ...b.logs.slice(fromB)].filter((l) => l['code'] === 'ROUTE_LOOP').length, 1);
    } finally {
      for (const p of proxies) await p.stop().catch(() => undefined);
    }
  });

  it('failed logins count against the client a trusted upstream named in XCLIENT ADDR, not against the upstream', async () => {
    const { world } = ctx;
    const [port] = await allocatePorts(1);
    const proxy = await startProxy(worldConfig(world, (raw: RawConfig) => {
      raw['listeners'] = [{ protocol: 'sieve', address: '127.0.0.1', port, tls: 'none' }];
      raw['sieve'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 200, authFailureMaxDelayMs: 3200 } };
      raw['loopProtection'] = { trustedNetworks: ['127.0.0.1/32'] };
    }));
    /** One wrong password for `addr` behind the upstream: ms until the NO. */
    const failFor = async (addr: string) => {
      const c = await LineClient.connect(port!);
      await reply(c);
      c.write(`XCLIENT ADDR=${addr} PORT=4711\r\n`);
      assert.match(await reply(c), /^OK "Updated"/m);
      const t = performance.now();
      c.write(`AUTHENTICATE "PLAIN" "${encodePlain(world.users.alice.uid, 'wrong-password')}"\r\n`);
      assert.match(await reply(c, 10_000), /^NO/m);
      c.close();
      return performance.now() - t;
    };
    try {
      const guesser = [await failFor('192.0.2.7'), await failFor('192.0.2.7'), await failFor('192.0.2.7'), await failFor('192.0.2.7')];
      assert.ok(guesser[3]! >= 1500, `the guesser's fourth failure waits 1.6 s: ${guesser.map(Math.round)}`);
      const other = await failFor('192.0.2.8');
      assert.ok(other < 1000, `another client behind the upstream starts at the base delay: ${Math.round(other)} ms (guesser ${guesser.map(Math.round)})`);
    } finally {
      await proxy.stop();
    }
  });

  it('the health probe reads Pigeonhole\'s capability greeting on the sieve port', async () => {
    const { world, proxy } = ctx;
    const route = routeForBackend(proxy.config, 'backend-a', 'sieve');
    assert.equal(route.port, world.backends.a.ports.sieve);
    const r = await probeOnce(route, { timeoutMs: 3000, clock: systemClock });
    assert.equal(r.ok, true, r.error);
    assert.match(r.identity ?? '', /Pigeonhole/);
    const dead = await probeOnce({ ...route, port: world.deadPort }, { timeoutMs: 3000, clock: systemClock });
    assert.equal(dead.ok, false);
  });
});
