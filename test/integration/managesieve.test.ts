// Proves the ManageSieve proxy against real Dovecot Pigeonhole: sieve-connect (a real client) uploads, activates and lists a script through the proxy
// (STARTTLS, AUTHENTICATE PLAIN), the script is read back from the backend's sieve directory; raw pre-login refusals, OAUTHBEARER, routing, health probe.
// Must not test OAuth validation details (oauth-login.test.ts) nor IMAP/POP3.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineClient } from './harness/line-client.js';
import type { World } from './harness/world.js';
import { withWorldAndProxy } from './proxy-fixture.js';
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
