// Proves OAUTHBEARER (RFC 7628) and XOAUTH2 logins end to end: tokens issued by the test identity provider, validated by the proxy (JWT against the
// JWKS URL, or RFC 7662 introspection), routed by the directory and passed on to real Dovecot's oauth2 passdb (or the master user); IMAP, POP3, submission.
// Must not test the validators' edge cases (test/unit/auth/* do) nor ManageSieve scripts (managesieve.test.ts).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { LineClient } from './harness/line-client.js';
import { IDP_AUDIENCE, IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_ISSUER } from './harness/identity-provider.js';
import { startProxy, withWorldAndProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import type { World } from './harness/world.js';
import { encodeTokenResponse } from '../../src/proxy/sasl.js';

const b64json = (line: string) => JSON.parse(Buffer.from(line.replace(/^(\+|334) ?/, ''), 'base64').toString('utf8')) as Record<string, unknown>;

function oauthRaw(world: World, raw: RawConfig, validation: 'jwt' | 'introspection', backendLogin: 'token' | 'master'): void {
  const idp = world.idp!;
  raw['oauth'] = {
    userClaim: validation === 'jwt' ? 'email' : 'username',
    tlsCaFile: world.tls.caPath,
    timeoutMs: 1500,
    backendLogin,
    scope: 'mail',
    ...(validation === 'jwt'
      ? { jwt: { jwksUrl: idp.jwksUrl, issuer: IDP_ISSUER, audience: IDP_AUDIENCE, algorithms: ['RS256'] } }
      : { introspection: { url: idp.introspectionUrl, clientId: IDP_CLIENT_ID, clientSecret: IDP_CLIENT_SECRET, cacheMs: 0, issuer: IDP_ISSUER, audience: IDP_AUDIENCE } }),
  };
  (raw['listeners'] as unknown[]).push(
    { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
  );
  raw['smtp'] = { requireTlsForAuth: false, authFailureDelayMs: 100, authFailureMaxDelayMs: 100 };
  raw['backendLogin'] = { ...(raw['backendLogin'] as object), masterUser: world.masterUser.name, masterPassword: world.masterUser.password, masterSeparator: world.masterUser.separator };
  // worldConfig validates without the loader, which would read tlsCaFile into tlsCa (and drop tlsCaFile: one of the two).
  const oauth = raw['oauth'] as Record<string, unknown>;
  oauth['tlsCa'] = readFileSync(world.tls.caPath, 'utf8');
  delete oauth['tlsCaFile'];
}

async function imapAuth(port: number, mech: string, ir: string): Promise<{ c: LineClient; reply: string }> {
  const c = await LineClient.connect(port);
  await c.readLine();
  c.write(`a1 AUTHENTICATE ${mech} ${ir}\r\n`);
  const reply = await c.readUntil(/^(a1 (OK|NO|BAD)|\+ )/m);
  return { c, reply };
}

describe('OAuth logins: JWT validation, token passed on to Dovecot oauth2 (real Dovecot + identity provider)', function () {
  this.timeout(60_000);
  const ctx = withWorldAndProxy((raw, world) => oauthRaw(world, raw, 'jwt', 'token'), { world: { oauth: true } });

  it('IMAP: imapflow logs in with an access token (OAUTHBEARER) and lands on the owning backend', async () => {
    const { world, proxy } = ctx;
    const token = await world.idp!.token('alice', world.users.alice.mail);
    const client = new ImapFlow({ host: '127.0.0.1', port: proxy.port('imap', 'starttls'), secure: false, doSTARTTLS: false, auth: { user: world.users.alice.mail, accessToken: token }, logger: false });
    await client.connect();
    const lock = await client.getMailboxLock('INBOX');
    try {
      const msg = await client.fetchOne('1', { headers: ['x-test-backend'] });
      assert.ok(msg && msg.headers, 'message 1 fetched');
      assert.match(msg.headers.toString(), /backend-a/);
    } finally {
      lock.release();
      await client.logout();
    }
    const dovecotLog = await world.backends.a.readLog();
    assert.match(dovecotLog, /imap-login: Info: Login: user=<alice>, method=OAUTHBEARER/);
    assert.ok(!proxy.logText().includes(token), 'the token never appears in the proxy log');
  });

  it('curl --oauth2-bearer fetches a message over IMAP and lists over POP3 through the proxy', async () => {
    const { world, proxy } = ctx;
    const token = await world.idp!.token('alice', world.users.alice.mail);
    const curl = (url: string) => new Promise<string>((resolve, reject) => {
      execFile('curl', ['-sS', '--max-time', '15', '--url', url, '--user', world.users.alice.mail, '--oauth2-bearer', token], (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`)); else resolve(stdout);
      });
    });
    assert.match(await curl(`imap://127.0.0.1:${proxy.port('imap', 'starttls')}/INBOX;MAILINDEX=1`), /X-Test-Backend: backend-a/i);
    assert.match(await curl(`pop3://127.0.0.1:${proxy.port('pop3', 'starttls')}/`), /^1 \d+/m);
  });

  it('IMAP: XOAUTH2 with SASL-IR works too; AUTH=OAUTHBEARER and AUTH=XOAUTH2 are advertised', async () => {
    const { world, proxy } = ctx;
    const token = await world.idp!.token('bob', world.users.bob.mail);
    const c = await LineClient.connect(proxy.port('imap', 'starttls'));
    assert.match(await c.readLine(), /AUTH=OAUTHBEARER AUTH=XOAUTH2/);
    c.write(`a1 AUTHENTICATE XOAUTH2 ${encodeTokenResponse('XOAUTH2', world.users.bob.mail, token)}\r\n`);
    assert.match(await c.readUntil(/^a1 /m), /^a1 OK/m);
    assert.match(await c.command('s1', 'SELECT INBOX'), /^s1 OK/m);
    c.close();
  });

  for (const [name, make] of [
    ['expired', (w: World) => w.idp!.token('alice', w.users.alice.mail, { expiresIn: -120 })],
    ['wrong audience', (w: World) => w.idp!.token('alice', w.users.alice.mail, { audience: 'another-service' })],
    ['wrong signature', (w: World) => w.idp!.token('alice', w.users.alice.mail, { foreignKey: true })],
  ] as const) {
    it(`IMAP: a token with ${name} gets the RFC 7628 error challenge, then NO [AUTHENTICATIONFAILED]`, async () => {
      const { world, proxy } = ctx;
      const token = await make(world);
      const { c, reply } = await imapAuth(proxy.port('imap', 'starttls'), 'OAUTHBEARER', encodeTokenResponse('OAUTHBEARER', world.users.alice.mail, token));
      assert.match(reply, /^\+ /);
      assert.deepEqual(b64json(reply.trim()), { status: 'invalid_token', scope: 'mail' });
      c.write('AQ==\r\n');
      assert.match(await c.readUntil(/^a1 /m), /^a1 NO \[AUTHENTICATIONFAILED\]/m);
      c.close();
    });
  }

  it('IMAP: a token for alice used as bob is refused', async () => {
    const { world, proxy } = ctx;
    const token = await world.idp!.token('alice', world.users.alice.mail);
    const { c, reply } = await imapAuth(proxy.port('imap', 'starttls'), 'OAUTHBEARER', encodeTokenResponse('OAUTHBEARER', world.users.bob.mail, token));
    assert.match(reply, /^\+ /);
    c.write('AQ==\r\n');
    assert.match(await c.readUntil(/^a1 /m), /^a1 NO \[AUTHENTICATIONFAILED\]/m);
    c.close();
  });

  it('POP3: AUTH OAUTHBEARER logs in; a bad token gets the challenge and -ERR [AUTH]', async () => {
    const { world, proxy } = ctx;
    const port = proxy.port('pop3', 'starttls');
    const good = await world.idp!.token('alice', world.users.alice.mail);
    const c = await LineClient.connect(port);
    await c.readLine();
    c.write('CAPA\r\n');
    assert.match(await c.readUntil(/^\.$/m), /^SASL PLAIN LOGIN OAUTHBEARER XOAUTH2$/m);
    c.write(`AUTH OAUTHBEARER ${encodeTokenResponse('OAUTHBEARER', '', good)}\r\n`);
    assert.match(await c.readLine(), /^\+OK/);
    c.write('STAT\r\n');
    assert.match(await c.readLine(), /^\+OK [1-9]/);
    c.close();
    const bad = await world.idp!.token('alice', world.users.alice.mail, { expiresIn: -60 });
    const d = await LineClient.connect(port);
    await d.readLine();
    d.write(`AUTH XOAUTH2 ${encodeTokenResponse('XOAUTH2', world.users.alice.mail, bad)}\r\n`);
    const challenge = await d.readLine();
    assert.match(challenge, /^\+ /);
    assert.equal(b64json(challenge)['status'], '401');
    d.write('\r\n');
    assert.match(await d.readLine(), /^-ERR \[AUTH\]/);
    d.close();
  });

  it('submission: nodemailer with XOAUTH2 relays through Dovecot submission to the sink; a bad token gets 535', async () => {
    const { world, proxy } = ctx;
    const port = proxy.port('submission', 'starttls');
    const token = await world.idp!.token('alice', world.users.alice.mail);
    const before = world.sink.messages.length;
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, auth: { type: 'OAuth2', user: world.users.alice.mail, accessToken: token } });
    await transport.sendMail({ from: world.users.alice.mail, to: 'someone@example.org', subject: 'oauth submission', text: 'sent with a bearer token' });
    await world.sink.waitFor(before + 1, 10_000);
    assert.match(world.sink.messages[before]!.raw.toString(), /sent with a bearer token/);
    const bad = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, auth: { type: 'OAuth2', user: world.users.alice.mail, accessToken: await world.idp!.token('alice', world.users.alice.mail, { foreignKey: true }) } });
    await assert.rejects(bad.sendMail({ from: world.users.alice.mail, to: 'someone@example.org', text: 'x' }), (e: Error & { responseCode?: number }) => e.responseCode === 535);
    assert.ok(!proxy.logText().includes(token));
  });

  it('submission: AUTH OAUTHBEARER (raw) is accepted and used towards the backend', async () => {
    const { world, proxy } = ctx;
    const token = await world.idp!.token('bob', world.users.bob.mail);
    const c = await LineClient.connect(proxy.port('submission', 'starttls'));
    await c.readUntil(/^220 /m);
    c.write('EHLO client.example\r\n');
    assert.match(await c.readUntil(/^250 /m), /AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2/);
    c.write(`AUTH OAUTHBEARER ${encodeTokenResponse('OAUTHBEARER', world.users.bob.mail, token)}\r\n`);
    assert.match(await c.readUntil(/^\d{3} /m), /^235 /m);
    c.write(`MAIL FROM:<${world.users.bob.mail}>\r\n`);
    assert.match(await c.readUntil(/^\d{3} /m, 10_000), /^250 /m);
    c.write('QUIT\r\n');
    c.close();
    assert.match(await world.backends.b.readLog(), /submission-login: Info: Login: user=<bob>, method=OAUTHBEARER/);
  });

  it('submission: tokens of common size (2 KB, Keycloak; 5 KB, Entra ID with groups) are taken and passed on to Dovecot submission, which takes at most 1 KB per AUTH line', async () => {
    const { world, proxy } = ctx;
    const groups = (n: number) => Array.from({ length: n }, (_x, i) => `/mail/group-${String(i).padStart(3, '0')}`);
    const common = await world.idp!.token('bob', world.users.bob.mail, { claims: { groups: groups(60) } });
    assert.ok(common.length > 1800, `token of ${common.length} characters`);
    // Entra ID with many groups: the AUTH line passes 4 KB (the submission command line limit without oauth).
    const large = await world.idp!.token('bob', world.users.bob.mail, { claims: { groups: groups(200) } });
    // Traced: the token sent after the backend's empty 334 is redacted like one sent with AUTH.
    proxy.instance.traces.set(world.users.bob.uid, 5);
    assert.ok(encodeTokenResponse('XOAUTH2', world.users.bob.mail, large).length > 6000, `token of ${large.length} characters`);
    for (const [mech, token] of [['XOAUTH2', common], ['OAUTHBEARER', common], ['XOAUTH2', large]] as const) {
      const c = await LineClient.connect(proxy.port('submission', 'starttls'));
      await c.readUntil(/^220 /m);
      c.write('EHLO client.example\r\n');
      await c.readUntil(/^250 /m);
      c.write(`AUTH ${mech} ${encodeTokenResponse(mech, world.users.bob.mail, token)}\r\n`);
      assert.match(await c.readUntil(/^\d{3} /m, 10_000), /^235 /m, mech);
      // The backend login comes with the first transaction.
      c.write(`MAIL FROM:<${world.users.bob.mail}>\r\n`);
      assert.match(await c.readUntil(/^\d{3} /m, 10_000), /^250 /m, mech);
      c.write('QUIT\r\n');
      c.close();
    }
    proxy.instance.traces.set(world.users.bob.uid, 0);
    assert.ok(proxy.logs.some((l) => l['trace'] === true && l['dir'] === 'to-backend' && /^\[redacted \d+ bytes\]$/.test(String(l['line']))), 'the traced backend login was recorded');
    for (const t of [common, large]) assert.ok(!proxy.logText().includes(t.split('.')[2]!), 'no token signature in the log (traced)');
    const log = await world.backends.b.readLog();
    assert.match(log, /submission-login: Info: Login: user=<bob>, method=XOAUTH2/);
    assert.match(log, /submission-login: Info: Login: user=<bob>, method=OAUTHBEARER/);
  });

  it('submission: a refused token gets its challenge, then 535 5.7.8 (README), for OAUTHBEARER and XOAUTH2 alike', async () => {
    const { world, proxy } = ctx;
    const bad = await world.idp!.token('bob', world.users.bob.mail, { audience: 'someone-else' });
    for (const mech of ['OAUTHBEARER', 'XOAUTH2'] as const) {
      const c = await LineClient.connect(proxy.port('submission', 'starttls'));
      await c.readUntil(/^220 /m);
      c.write('EHLO client.example\r\n');
      await c.readUntil(/^250 /m);
      c.write(`AUTH ${mech} ${encodeTokenResponse(mech, world.users.bob.mail, bad)}\r\n`);
      assert.match(await c.readUntil(/^\d{3} /m), /^334 /m, mech);
      c.write(mech === 'OAUTHBEARER' ? 'AQ==\r\n' : '\r\n');
      assert.match(await c.readUntil(/^\d{3} /m), /^535 5\.7\.8 /m, mech);
      c.close();
    }
  });

  it('the proxy fetched the JWKS once for all of these logins (cached for jwksCacheMs)', () => {
    assert.equal(ctx.world.idp!.counts.jwks, 1);
  });
});

describe('OAuth logins: introspection at the provider, master-user backend login (real Dovecot)', function () {
  this.timeout(60_000);
  let proxy: RunningProxy | undefined;
  const ctx = withWorldAndProxy((raw, world) => oauthRaw(world, raw, 'jwt', 'token'), {
    world: { oauth: true },
    onReady: async (world) => { proxy = await startProxy(worldConfig(world, (raw) => oauthRaw(world, raw, 'introspection', 'master'))); },
    onStop: async () => { await proxy?.stop(); },
  });

  it('IMAP: the proxy introspects the token and logs in as the master user', async () => {
    const { world } = ctx;
    const token = await world.idp!.token('alice', world.users.alice.mail);
    const asked = world.idp!.counts.introspection;
    const { c, reply } = await imapAuth(proxy!.port('imap', 'starttls'), 'OAUTHBEARER', encodeTokenResponse('OAUTHBEARER', '', token));
    assert.match(reply, /^a1 OK/m);
    assert.equal(world.idp!.counts.introspection, asked + 1, 'one introspection request (Dovecot was not asked: master login)');
    assert.match(await world.backends.a.readLog(), /Login: user=<alice>, method=PLAIN/);
    c.close();
  });

  it('IMAP: identity provider down → NO [UNAVAILABLE] at once, no challenge; back up → works', async () => {
    const { world } = ctx;
    const token = await world.idp!.token('alice', world.users.alice.mail);
    world.idp!.setDown(true);
    try {
      const { c, reply } = await imapAuth(proxy!.port('imap', 'starttls'), 'XOAUTH2', encodeTokenResponse('XOAUTH2', world.users.alice.mail, token));
      assert.match(reply, /^a1 NO \[UNAVAILABLE\]/m);
      c.close();
      const p = await LineClient.connect(proxy!.port('pop3', 'starttls'));
      await p.readLine();
      p.write(`AUTH OAUTHBEARER ${encodeTokenResponse('OAUTHBEARER', '', token)}\r\n`);
      assert.match(await p.readLine(), /^-ERR \[SYS\/TEMP\]/);
      p.close();
    } finally {
      world.idp!.setDown(false);
    }
    const { c, reply } = await imapAuth(proxy!.port('imap', 'starttls'), 'XOAUTH2', encodeTokenResponse('XOAUTH2', world.users.alice.mail, token));
    assert.match(reply, /^a1 OK/m);
    c.close();
  });
});
