// Proves the submission service against real slapd + Dovecot submission + the SMTP sink: STARTTLS and implicit TLS with AUTH, refusals, limits, dead backends.
// Must not test inbound (MX) delivery; smtp-inbound.test.ts does.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import nodemailer from 'nodemailer';
import { simpleParser } from 'mailparser';
import { pino } from 'pino';
import { LineClient } from './harness/line-client.js';
import { pollUntil } from './harness/ports.js';
import { startWorld, type World } from './harness/world.js';
import { serveOnListener, worldConfig, type Served } from './proxy-fixture.js';
import { createDirectory } from '../../src/directory/create.js';
import { openGate, type BackendGate } from '../../src/health/gate.js';
import { SessionRegistry } from '../../src/proxy/sessions.js';
import { createSubmissionService } from '../../src/proxy/smtp/index.js';
import type { Config, ListenerConfig } from '../../src/config/schema.js';
import type { ConnectionHandler } from '../../src/proxy/protocol.js';
import type { Directory } from '../../src/directory/directory.js';
import type { Route } from '../../src/directory/backends.js';

const listener = (tls: ListenerConfig['tls']): ListenerConfig => ({ protocol: 'submission', address: '127.0.0.1', port: 0, tls, proxyProtocol: false, proxyTrustedNetworks: [] });

async function smtpReply(c: LineClient, timeoutMs = 10_000): Promise<string> {
  return c.readUntil(/^\d{3} /, timeoutMs);
}

/** Connect, read the greeting, EHLO, STARTTLS: the TLS client, before its second EHLO. */
async function overStartTls(port: number, ca: Buffer, opts: { localAddress?: string } = {}): Promise<LineClient> {
  const c = await LineClient.connect(port, opts);
  await smtpReply(c);
  c.send('EHLO client.example');
  await smtpReply(c);
  c.send('STARTTLS');
  assert.match(await smtpReply(c), /^220 /);
  return c.startTls(ca);
}

describe('SMTP submission (real Dovecot submission + sink)', function () {
  this.timeout(60_000);
  let world: World;
  let config: Config;
  let directory: Directory;
  let ca: Buffer;
  const logs: Array<Record<string, unknown>> = [];
  let logText = '';
  const reports: Array<{ backend: string; outcome: string }> = [];
  const gate: BackendGate = { admit: (r: Route) => openGate.admit(r), report: (r, outcome) => { reports.push({ backend: r.backend, outcome }); } };
  let service: ConnectionHandler;
  let starttls: Served;
  let implicit: Served;
  let plain: Served;
  const sessions = new SessionRegistry();

  before(async () => {
    world = await startWorld();
    config = worldConfig(world, (raw) => {
      raw['smtp'] = { hostname: 'proxy.example.test', authFailureDelayMs: 200, authFailureMaxDelayMs: 200, maxMessageBytes: 2 * 1024 * 1024, maxErrors: 5 };
    });
    const logger = pino({ level: 'debug' }, new Writable({
      write(chunk: Buffer, _e, cb) {
        const text = chunk.toString();
        logText += text;
        for (const l of text.split('\n')) if (l.trim()) logs.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }));
    directory = createDirectory(config, logger);
    ca = readFileSync(world.tls.caPath);
    service = createSubmissionService({ config, directory, gate, sessions, logger, secureContext: { key: readFileSync(world.tls.keyPath), cert: readFileSync(world.tls.certPath) } });
    starttls = await serveOnListener(service, listener('starttls'), logger);
    implicit = await serveOnListener(service, listener('implicit'), logger);
    plain = await serveOnListener(service, listener('none'), logger);
  });
  after(async () => {
    await service?.close();
    await Promise.all([starttls?.close(), implicit?.close(), plain?.close()]);
    await directory?.close();
    await world?.stop();
  });

  const transport = (port: number, secure: boolean, user: string, pass: string, method?: 'PLAIN' | 'LOGIN') => nodemailer.createTransport({
    host: '127.0.0.1', port, secure, requireTLS: !secure, auth: { user, pass, ...(method ? { method } : {}) },
    tls: { ca, servername: 'localhost' }, connectionTimeout: 10_000, greetingTimeout: 10_000,
  });

  async function sendAndCheck(port: number, secure: boolean, method: 'PLAIN' | 'LOGIN'): Promise<void> {
    const before = world.sink.messages.length;
    const marker = `${method}-${secure ? 'implicit' : 'starttls'}-${randomBytes(4).toString('hex')}`;
    const text = `Hello Bob,\r\n.line starting with a dot\r\n..and two\r\n\r\nUnicode: gr\u00fc\u00dfe \u2603\r\n${'x'.repeat(990)}\r\n`;
    const attachment = randomBytes(50_000);
    const info = await transport(port, secure, world.users.alice.uid, world.users.alice.password, method).sendMail({
      from: world.users.alice.mail, to: 'someone@elsewhere.example', subject: `submission ${marker}`, text,
      attachments: [{ filename: 'blob.bin', content: attachment }],
    });
    assert.match(info.response, /^250 /);
    await world.sink.waitFor(before + 1, 10_000);
    const got = world.sink.messages.find((m) => m.raw.includes(marker));
    assert.ok(got, 'message reached the sink');
    assert.equal(got.from, world.users.alice.mail);
    assert.deepEqual(got.to, ['someone@elsewhere.example']);
    const parsed = await simpleParser(got.raw);
    assert.equal(parsed.subject, `submission ${marker}`);
    assert.equal(parsed.text, text.replace(/\r\n/g, '\n'));
    assert.equal(parsed.attachments.length, 1);
    assert.ok(parsed.attachments[0]!.content.equals(attachment), 'attachment bytes intact');
  }

  it('relays AUTH PLAIN over STARTTLS (587) to the sink with the body intact', async () => {
    await sendAndCheck(starttls.port, false, 'PLAIN');
  });

  it('relays AUTH LOGIN over implicit TLS (465) to the sink with the body intact', async () => {
    await sendAndCheck(implicit.port, true, 'LOGIN');
  });

  it('forwards the client address with XCLIENT and logs one transaction summary without the password', async () => {
    const t = await overStartTls(starttls.port, ca, { localAddress: '127.0.0.3' });
    t.send('EHLO client.example');
    const ehlo = await smtpReply(t);
    assert.match(ehlo, /AUTH PLAIN LOGIN/);
    // Not offered, so a client does not send what envelope.ts refuses with 555 (smtp-server offers REQUIRETLS on TLS by default).
    assert.doesNotMatch(ehlo, /^250[- ](REQUIRETLS|DSN|SMTPUTF8)\b/m);
    t.send(`AUTH PLAIN ${Buffer.from(`\0alice\0${world.users.alice.password}`).toString('base64')}`);
    assert.match(await smtpReply(t), /^235 /);
    t.send('MAIL FROM:<alice@example.test>');
    assert.match(await smtpReply(t), /^250 /);
    t.send('RCPT TO:<xclient@elsewhere.example>');
    assert.match(await smtpReply(t), /^250 /);
    t.send('DATA');
    assert.match(await smtpReply(t), /^354 /);
    t.write('Subject: xclient\r\n\r\nbody\r\n.\r\n');
    const done = await smtpReply(t);
    assert.match(done, /^250 /);
    t.send('QUIT');
    await smtpReply(t).catch(() => '');
    const log = await world.backends.a.readLog();
    assert.match(log, /submission-login: Info: Login: user=<alice>.*rip=127\.0\.0\.3/, 'Dovecot saw the client address');
    const summary = logs.find((l) => l['phase'] === 'transaction' && l['rcpts'] === 1 && String(l['reply']).startsWith('250') && l['backend'] === 'backend-a');
    assert.ok(summary, 'transaction summary logged');
    assert.ok(!logText.includes(world.users.alice.password), 'password never logged');
  });

  it('after STARTTLS, a client that pipelines AUTH and a transaction and half-closes gets every reply; the message is relayed', async () => {
    const marker = `halfclose-${randomBytes(4).toString('hex')}`;
    const before = world.sink.messages.length;
    const t = await overStartTls(starttls.port, ca);
    const auth = Buffer.from(`\0alice\0${world.users.alice.password}`).toString('base64');
    t.write(`EHLO client.example\r\nAUTH PLAIN ${auth}\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<halfclose@elsewhere.example>\r\nDATA\r\nSubject: ${marker}\r\n\r\nbody\r\n.\r\nQUIT\r\n`);
    t.socket.end();
    const all = await t.readUntil(/^221 /, 10_000);
    assert.match(all, /^235 [^\r]*\r\n250 [^\r]*\r\n250 [^\r]*\r\n354 [^\r]*\r\n250 [^\r]*\r\n221 /m, all);
    await world.sink.waitFor(before + 1, 10_000);
    assert.ok(world.sink.messages.some((m) => m.raw.includes(marker)), 'relayed to the sink');
    await pollUntil(() => sessions.size === 0, 5000, () => `${sessions.size} sessions left`);
  });

  it('refuses mail without AUTH (530 5.7.0) and offers AUTH only after TLS', async () => {
    const c = await LineClient.connect(starttls.port);
    assert.match(await smtpReply(c), /^220 proxy\.example\.test ESMTP/);
    c.send('EHLO client.example');
    const ehlo = await smtpReply(c);
    assert.match(ehlo, /STARTTLS/);
    assert.doesNotMatch(ehlo, /AUTH/);
    assert.match(ehlo, /SIZE 2097152/);
    c.send('MAIL FROM:<spammer@example.org>');
    assert.match(await smtpReply(c), /^530 5\.7\.0 /);
    c.send('RCPT TO:<victim@elsewhere.example>');
    assert.match(await smtpReply(c), /^5\d\d /);
    c.send('QUIT');
    c.close();
    const t = await LineClient.connect(implicit.port, { tls: true, ca });
    await smtpReply(t);
    t.send('EHLO client.example');
    const ehloTls = await smtpReply(t);
    assert.match(ehloTls, /AUTH PLAIN LOGIN/);
    assert.doesNotMatch(ehloTls, /STARTTLS/);
    t.send('MAIL FROM:<spammer@example.org>');
    assert.match(await smtpReply(t), /^530 5\.7\.0 /);
    t.close();
  });

  it('answers a wrong password with 535 5.7.8 after the failure delay', async () => {
    const c = await LineClient.connect(implicit.port, { tls: true, ca });
    await smtpReply(c);
    c.send('EHLO client.example');
    await smtpReply(c);
    const t0 = Date.now();
    c.send(`AUTH PLAIN ${Buffer.from('\0alice\0not-the-password').toString('base64')}`);
    assert.match(await smtpReply(c), /^535 5\.7\.8 /);
    assert.ok(Date.now() - t0 >= 180, 'failure delayed');
    c.close();
    assert.ok(!logText.includes('not-the-password'));
  });

  it('gives 454 4.7.0 at AUTH for an account without a backend, 451 4.3.0 at MAIL for a dead backend', async () => {
    await assert.rejects(transport(implicit.port, true, 'carol', world.users.carol.password).sendMail({ from: 'carol@example.test', to: 'x@elsewhere.example', text: 'x' }), /454 4\.7\.0/);
    const before = world.sink.messages.length;
    await assert.rejects(transport(implicit.port, true, 'dave', world.users.dave.password).sendMail({ from: 'dave@example.test', to: 'x@elsewhere.example', text: 'x' }), (e: Error & { responseCode?: number; response?: string }) => {
      assert.equal(e.responseCode, 451);
      assert.match(e.response ?? '', /^451 4\.3\.0 /);
      return true;
    });
    assert.equal(world.sink.messages.length, before);
    assert.ok(reports.some((r) => r.backend === 'backend-dead' && r.outcome === 'fail'), 'health gate told about the dead backend');
  });

  it('enforces SIZE at MAIL and during DATA without relaying anything', async () => {
    const c = await LineClient.connect(implicit.port, { tls: true, ca });
    await smtpReply(c);
    c.send('EHLO client.example');
    await smtpReply(c);
    c.send(`AUTH PLAIN ${Buffer.from(`\0alice\0${world.users.alice.password}`).toString('base64')}`);
    assert.match(await smtpReply(c), /^235 /);
    c.send('MAIL FROM:<alice@example.test> SIZE=99999999');
    assert.match(await smtpReply(c), /^552 /);
    const before = world.sink.messages.length;
    c.send('MAIL FROM:<alice@example.test>');
    assert.match(await smtpReply(c), /^250 /);
    c.send('RCPT TO:<big@elsewhere.example>');
    assert.match(await smtpReply(c), /^250 /);
    c.send('DATA');
    assert.match(await smtpReply(c), /^354 /);
    const line = `${'y'.repeat(998)}\r\n`;
    c.write(`Subject: too big\r\n\r\n${line.repeat(3 * 1024)}.\r\n`);
    assert.match(await smtpReply(c, 20_000), /^552 5\.3\.4 /);
    // The session goes on: a normal message right after is relayed.
    c.send('MAIL FROM:<alice@example.test>');
    assert.match(await smtpReply(c), /^250 /);
    c.send('RCPT TO:<after-big@elsewhere.example>');
    assert.match(await smtpReply(c), /^250 /);
    c.send('DATA');
    assert.match(await smtpReply(c), /^354 /);
    c.write('Subject: after big\r\n\r\nsmall\r\n.\r\n');
    assert.match(await smtpReply(c), /^250 /);
    await world.sink.waitFor(before + 1, 10_000);
    assert.equal(world.sink.messages.length, before + 1, 'only the small message arrived');
    assert.deepEqual(world.sink.messages[before]!.to, ['after-big@elsewhere.example']);
    c.close();
  });

  it('registers sessions and kicks them with 421', async () => {
    const c = await LineClient.connect(implicit.port, { tls: true, ca });
    await smtpReply(c);
    c.send(`EHLO client.example`);
    await smtpReply(c);
    c.send(`AUTH PLAIN ${Buffer.from(`\0bob\0${world.users.bob.password}`).toString('base64')}`);
    assert.match(await smtpReply(c), /^235 /);
    const live = sessions.list({ user: 'bob' });
    assert.equal(live.length, 1);
    assert.equal(live[0]!.info.protocol, 'submission');
    const { ProxyError } = await import('../../src/errors.js');
    assert.equal(sessions.kick({ user: 'bob' }, new ProxyError('BACKEND_MAINTENANCE')), 1);
    assert.match(await smtpReply(c), /^421 /);
    await pollUntil(() => sessions.list({ user: 'bob' }).length === 0, 3000, () => `${sessions.list({ user: 'bob' }).length} sessions of bob after the kick`);
  });

  it('drops a plaintext client on the implicit TLS port and forgets its session', async () => {
    const c = await LineClient.connect(implicit.port);
    c.send('EHLO plaintext.example');
    await assert.rejects(c.readLine(5000));
    await pollUntil(() => sessions.size === 0, 3000, () => `${sessions.size} sessions left`);
  });

  it('uses STARTTLS towards a backend whose submission endpoint asks for it', async () => {
    const tlsConfig = worldConfig(world, (raw) => {
      raw['smtp'] = { hostname: 'proxy.example.test', authFailureDelayMs: 200, authFailureMaxDelayMs: 200 };
      const backends = raw['backends'] as Record<string, Record<string, unknown>>;
      backends['backend-b']!['submission'] = { port: world.backends.b.ports.submission, tls: 'starttls' };
      // Not trusting: no XCLIENT, the proxy's own address shows at the backend.
      backends['backend-b']!['trustsProxy'] = false;
    });
    const logger = pino({ level: 'silent' });
    const svc = createSubmissionService({ config: tlsConfig, directory, gate: openGate, sessions: new SessionRegistry(), logger, secureContext: { key: readFileSync(world.tls.keyPath), cert: readFileSync(world.tls.certPath) } });
    const srv = await serveOnListener(svc, listener('implicit'), logger);
    try {
      const before = world.sink.messages.length;
      const marker = `backend-starttls-${randomBytes(4).toString('hex')}`;
      const info = await nodemailer.createTransport({ host: '127.0.0.1', port: srv.port, secure: true, localAddress: '127.0.0.4', auth: { user: 'bob', pass: world.users.bob.password }, tls: { ca, servername: 'localhost' } })
        .sendMail({ from: world.users.bob.mail, to: 'tls@elsewhere.example', subject: marker, text: 'over TLS twice' });
      assert.match(info.response, /^250 /);
      await world.sink.waitFor(before + 1, 10_000);
      assert.ok(world.sink.messages.some((m) => m.raw.includes(marker)));
      const log = await world.backends.b.readLog();
      const line = log.split('\n').filter((l) => /submission-login: Info: Login: user=<bob>, method=PLAIN/.test(l)).pop() ?? '';
      assert.match(line, /rip=127\.0\.0\.1, .*TLS/, 'STARTTLS to the backend, no XCLIENT');
    } finally {
      await svc.close();
      await srv.close();
    }
  });

  it('logs in to the backend as the master user in master mode', async () => {
    const masterConfig = worldConfig(world, (raw) => {
      raw['smtp'] = { hostname: 'proxy.example.test' };
      raw['backendLogin'] = { mode: 'master', masterUser: world.masterUser.name, masterPassword: world.masterUser.password, masterSeparator: world.masterUser.separator, backendLoginBudgetMs: 5000, connectTimeoutMs: 1000 };
    });
    const svc = createSubmissionService({ config: masterConfig, directory, gate: openGate, sessions: new SessionRegistry(), logger: pino({ level: 'silent' }), secureContext: { key: readFileSync(world.tls.keyPath), cert: readFileSync(world.tls.certPath) } });
    const srv = await serveOnListener(svc, listener('implicit'), pino({ level: 'silent' }));
    try {
      const before = world.sink.messages.length;
      const info = await transport(srv.port, true, 'erin', world.users.erin.password).sendMail({ from: world.users.erin.mail, to: 'master@elsewhere.example', subject: 'master mode', text: 'x' });
      assert.match(info.response, /^250 /);
      await world.sink.waitFor(before + 1, 10_000);
      const log = await world.backends.a.readLog();
      assert.match(log, /auth: Info: Master user logging in as erin/);
    } finally {
      await svc.close();
      await srv.close();
    }
  });

  it('takes config and directory from getters: new connections see a reload, live ones keep theirs', async () => {
    let current = worldConfig(world, (raw) => { raw['smtp'] = { hostname: 'before.example.test' }; });
    const material = { key: readFileSync(world.tls.keyPath), cert: readFileSync(world.tls.certPath) };
    const svc = createSubmissionService({ config: () => current, directory: () => directory, gate: openGate, sessions: new SessionRegistry(), logger: pino({ level: 'silent' }), secureContext: () => ({ ...material }) });
    const srv = await serveOnListener(svc, listener('implicit'), pino({ level: 'silent' }));
    try {
      const old = await LineClient.connect(srv.port, { tls: true, ca });
      assert.match(await smtpReply(old), /^220 before\.example\.test /);
      current = worldConfig(world, (raw) => { raw['smtp'] = { hostname: 'after.example.test', maxMessageBytes: 4096 }; });
      const fresh = await LineClient.connect(srv.port, { tls: true, ca });
      assert.match(await smtpReply(fresh), /^220 after\.example\.test /);
      fresh.send('EHLO client.example');
      assert.match(await smtpReply(fresh), /SIZE 4096/);
      old.send('EHLO client.example');
      assert.match(await smtpReply(old), /^250-before\.example\.test .*SIZE 52428800/s);
      old.close();
      fresh.close();
    } finally {
      await svc.close();
      await srv.close();
    }
  });

  it('does not offer STARTTLS or AUTH on a plain listener that requires TLS for auth', async () => {
    const c = await LineClient.connect(plain.port);
    await smtpReply(c);
    c.send('EHLO client.example');
    const ehlo = await smtpReply(c);
    assert.doesNotMatch(ehlo, /STARTTLS|AUTH/);
    c.close();
  });
});
