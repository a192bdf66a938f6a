// Proves two gaps closed for SMTP against real slapd + Dovecot submission + a real redis-server: trace on demand records a
// traced user's submission session (client dialogue through STARTTLS, backend login, first KiB of the message) with no
// credential in any log, and nothing for other users; submission sessions are in the tier's session registry (seen from
// another instance), count against the tier-wide submission limit, and are released when the connection closes; the
// hop count reaches Dovecot submission as XCLIENT TTL=; inbound SMTP traces a session carrying mail for a traced user.
// Must not test trace for IMAP/POP3 (trace.test.ts) nor the tier module alone (tier-redis.test.ts).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { LineClient } from './harness/line-client.js';
import { sendAndQuit, smtpReply as reply } from './smtp-helpers.js';
import { startWorld, type World } from './harness/world.js';
import { startRedis, TIER_ACL_RULES, type RedisNode } from './harness/redis.js';
import { pollUntil } from './harness/ports.js';
import { serveOnListener, worldConfig, type Served } from './proxy-fixture.js';
import { createDirectory } from '../../src/directory/create.js';
import { openGate } from '../../src/health/gate.js';
import { SessionRegistry } from '../../src/proxy/sessions.js';
import { createInboundService, createSubmissionService } from '../../src/proxy/smtp/index.js';
import { TraceTable } from '../../src/trace/table.js';
import { Tier } from '../../src/tier/tier.js';
import type { Config } from '../../src/config/schema.js';
import type { ConnectionHandler } from '../../src/proxy/protocol.js';
import type { Directory } from '../../src/directory/directory.js';

const PASSWORD = 'smtp-tier-secret';
const plain = (user: string, password: string) => Buffer.from(`\0${user}\0${password}`).toString('base64');

describe('SMTP submission: trace on demand and the tier session registry (real Dovecot submission, real Redis)', function () {
  this.timeout(90_000);
  let world: World;
  let redis: RedisNode;
  let config: Config;
  let directory: Directory;
  let service: ConnectionHandler;
  let served: Served;
  let inbound: ConnectionHandler;
  let inboundServed: Served;
  let tier: Tier;
  /** A second instance of the tier: what any other proxy would see. */
  let other: Tier;
  let ca: Buffer;
  const logs: Array<Record<string, unknown>> = [];
  let logText = '';
  const traces = new TraceTable();

  before(async () => {
    world = await startWorld();
    try {
      redis = await startRedis({ dir: join(world.dir, 'redis'), extra: [`user mailproxy on >${PASSWORD} ${TIER_ACL_RULES}`] });
      config = worldConfig(world, (raw) => {
        raw['log'] = { level: 'warn' };
        raw['smtp'] = { hostname: 'proxy.example.test', authFailureDelayMs: 0, authFailureMaxDelayMs: 0, maxErrors: 10 };
        raw['tier'] = {
          redis: { host: '127.0.0.1', port: redis.port, username: 'mailproxy', password: PASSWORD },
          commandTimeoutMs: 200, retryIntervalMs: 100, heartbeatMs: 200, instanceTtlMs: 2000,
          limits: { maxSessionsPerUser: { submission: 1 } },
        };
      });
      const logger = pino({ level: 'warn' }, new Writable({
        write(chunk: Buffer, _e, cb) {
          const text = chunk.toString();
          logText += text;
          for (const l of text.split('\n')) if (l.trim()) logs.push(JSON.parse(l) as Record<string, unknown>);
          cb();
        },
      }));
      tier = new Tier({ config: { ...config.tier!, instanceName: 'one' }, logger, role: 'instance' });
      other = new Tier({ config: { ...config.tier!, instanceName: 'two' }, logger, role: 'instance' });
      tier.start();
      other.start();
      await pollUntil(() => tier.isUp && other.isUp, 5000, () => 'tier up');
      directory = createDirectory(config, logger);
      ca = readFileSync(world.tls.caPath);
      service = createSubmissionService({
        config, directory, gate: openGate, sessions: new SessionRegistry(), logger, traces, tier,
        secureContext: { key: readFileSync(world.tls.keyPath), cert: readFileSync(world.tls.certPath) },
      });
      served = await serveOnListener(service, { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls', proxyProtocol: false, proxyTrustedNetworks: [] }, logger);
      inbound = createInboundService({ config, directory, gate: openGate, sessions: new SessionRegistry(), logger, traces });
      inboundServed = await serveOnListener(inbound, { protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'none', proxyProtocol: false, proxyTrustedNetworks: [] }, logger);
    } catch (e) {
      await redis?.stop();
      await world.stop();
      throw e;
    }
  });

  after(async () => {
    await service?.close();
    await served?.close();
    await inbound?.close();
    await inboundServed?.close();
    await directory?.close();
    await tier?.close();
    await other?.close();
    await redis?.stop();
    await world?.stop();
  });

  /** EHLO, STARTTLS, EHLO, AUTH PLAIN; resolves with the TLS client and the AUTH reply. */
  async function login(user: 'alice' | 'bob'): Promise<{ t: LineClient; auth: string }> {
    const u = world.users[user];
    const c = await LineClient.connect(served.port);
    await reply(c);
    c.send('EHLO client.example');
    await reply(c);
    c.send('STARTTLS');
    assert.match(await reply(c), /^220 /m);
    const t = await c.startTls(ca);
    t.send('EHLO client.example');
    await reply(t);
    t.send(`AUTH PLAIN ${plain(u.uid, u.password)}`);
    return { t, auth: await reply(t) };
  }

  const traceLines = (from: number) => logs.slice(from).filter((l) => l['trace'] === true && l['msg'] === 'trace').map((l) => `${String(l['dir'])}: ${String(l['line'])}`);

  it('traces alice\'s submission session (dialogue, STARTTLS, backend login, first KiB of the message), redacted; not bob\'s', async () => {
    traces.set(world.users.alice.uid, 5);
    try {
      const from = logs.length;
      const a = await login('alice');
      assert.match(a.auth, /^235 /m);
      const body = `Subject: traced\r\n\r\n${'line of the traced message\r\n'.repeat(200)}`;
      await sendAndQuit(a.t, world.users.alice.mail, 'traced@elsewhere.example', body);
      await pollUntil(() => traceLines(from).includes('client: QUIT'), 5000, () => traceLines(from).join('\n'));
      const lines = traceLines(from);
      for (const want of ['client: EHLO client.example', 'client: STARTTLS', 'client: AUTH PLAIN [redacted]', 'proxy: 354 End data with <CR><LF>.<CR><LF>', 'client: [message data after the first 1024 bytes not logged]']) {
        assert.ok(lines.includes(want), `${want}\n${lines.join('\n')}`);
      }
      // The TLS part of the dialogue is recorded (the EHLO after the handshake), no ciphertext.
      assert.equal(lines.filter((l) => l === 'client: EHLO client.example').length, 2, lines.join('\n'));
      assert.ok(!lines.some((l) => /\\x16\\x03/.test(l)), 'no TLS record bytes in the trace');
      // The backend login towards Dovecot submission, with its AUTH redacted too.
      // Loop protection: the hop count goes to Dovecot as XCLIENT TTL= (proxyTtl 5 → 4 left), and Dovecot takes it (220).
      assert.ok(lines.some((l) => /^to-backend: XCLIENT ADDR=127\.0\.0\.1 .* TTL=4 /.test(l)), lines.join('\n'));
      assert.ok(lines.some((l) => /^from-backend: 220 /.test(l)), lines.join('\n'));
      assert.ok(lines.includes('to-backend: AUTH PLAIN [redacted]'), lines.join('\n'));
      assert.ok(lines.some((l) => /^from-backend: 235 /.test(l)), lines.join('\n'));
      const messageLines = lines.filter((l) => l === 'client: line of the traced message').length;
      assert.ok(messageLines > 10 && messageLines < 40, `only the first KiB of the message (${messageLines} lines)`);
      await pollUntil(() => logs.slice(from).some((l) => l['msg'] === 'trace: session end'), 5000, () => 'the end of the session is traced');

      const fromBob = logs.length;
      const b = await login('bob');
      assert.match(b.auth, /^235 /m);
      await sendAndQuit(b.t, world.users.bob.mail, 'traced@elsewhere.example', 'Subject: not traced\r\n\r\nhello');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(logs.slice(fromBob).filter((l) => l['trace'] === true), [], 'nothing traced for bob');
      for (const secret of [world.users.alice.password, world.users.bob.password, plain(world.users.alice.uid, world.users.alice.password)]) {
        assert.ok(!logText.includes(secret), 'no password (plain or base64) in any log');
      }
    } finally {
      traces.set(world.users.alice.uid, 0);
    }
  });

  it('inbound SMTP: mail for a traced user traces the session from its start (MAIL before the RCPT that matched)', async () => {
    const bob = world.users.bob;
    traces.set(bob.uid, 5);
    try {
      const from = logs.length;
      const c = await LineClient.connect(inboundServed.port);
      await reply(c);
      c.send('EHLO mx.example');
      await reply(c);
      await sendAndQuit(c, 'sender@elsewhere.example', bob.mail, 'Subject: for bob\r\n\r\ntraced inbound');
      await pollUntil(() => traceLines(from).includes('client: QUIT'), 5000, () => traceLines(from).join('\n'));
      const lines = traceLines(from);
      for (const want of ['client: EHLO mx.example', 'client: MAIL FROM:<sender@elsewhere.example>', `client: RCPT TO:<${bob.mail}>`, 'client: traced inbound']) {
        assert.ok(lines.includes(want), `${want}\n${lines.join('\n')}`);
      }
      assert.ok(lines.some((l) => /^to-backend: LHLO |^to-backend: EHLO /.test(l)), lines.join('\n'));
      assert.ok(logs.slice(from).some((l) => l['msg'] === 'trace: recipient' && l['user'] === bob.uid));
    } finally {
      traces.set(bob.uid, 0);
    }
  });

  it('registers submission sessions in the tier: seen from another instance, limited tier-wide, released on close', async () => {
    const alice = world.users.alice;
    const first = await login('alice');
    assert.match(first.auth, /^235 /m);
    const seen = await other.sessions.list(alice.uid);
    assert.equal(seen.source, 'tier');
    assert.deepEqual(seen.sessions.map((s) => [s.instance, s.protocol, s.user]), [['one', 'submission', alice.uid]]);
    // maxSessionsPerUser.submission = 1: a second session of alice anywhere in the tier gets the temporary refusal.
    const second = await login('alice');
    assert.match(second.auth, /^454 4\.7\.0 /m);
    second.t.close();
    // bob is not limited by alice's session.
    const bob = await login('bob');
    assert.match(bob.auth, /^235 /m);
    bob.t.close();
    first.t.send('QUIT');
    await reply(first.t).catch(() => '');
    first.t.close();
    await pollUntil(async () => (await other.sessions.list(alice.uid)).sessions.length === 0, 5000, () => 'alice\'s session released');
    const again = await login('alice');
    assert.match(again.auth, /^235 /m, 'the released slot is free again');
    again.t.close();
    await pollUntil(async () => (await other.sessions.list(world.users.bob.uid)).sessions.length === 0, 5000, () => 'bob\'s session released');
  });
});
