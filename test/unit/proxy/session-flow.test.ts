// Proves whole IMAP, POP3 and submission sessions on in-memory sockets and a fake clock: login and relay, the pre-login
// deadline, kicks, a client half-closing during its login, backend failures (refused, silent) reported to health, the
// OAuth error challenge's timing (IMAP, ManageSieve); the SMTP/LMTP greeting name. Must not open sockets; proxy timers run on the fake clock (only
// smtp-server's own greeting delay is real time).
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { ProxyError } from '../../../src/errors.js';
import { registry } from '../../../src/metrics.js';
import { ProtocolService } from '../../../src/proxy/session.js';
import { imapModule } from '../../../src/proxy/imap/index.js';
import { pop3Module } from '../../../src/proxy/pop3/index.js';
import { sieveModule } from '../../../src/proxy/sieve/index.js';
import { encodeTokenResponse } from '../../../src/proxy/sasl.js';
import { createInboundService, createLmtpService, createSubmissionService } from '../../../src/proxy/smtp/index.js';
import os from 'node:os';
import { FakeClock } from '../health/fake-clock.js';
import { IMAP_BACKEND, PORTS, accepted, fakeDialer, handlerDeps, recordingGate, socketPair, testConfig, type Behaviour, type FakeSocket } from './fakes.js';

const POP3_BACKEND: Behaviour = {
  kind: 'script',
  script: {
    greeting: '+OK backend ready\r\n',
    reply: (line) => (line.startsWith('AUTH PLAIN ') ? '+OK Logged in\r\n' : line === 'STAT' ? '+OK 2 320\r\n' : undefined),
  },
};
const SUBMISSION_BACKEND: Behaviour = {
  kind: 'script',
  script: {
    greeting: '220 b1 ESMTP\r\n',
    reply: (line) => {
      if (line.startsWith('EHLO ')) return '250-b1\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n';
      if (line.startsWith('AUTH PLAIN ')) return '235 2.7.0 Authenticated\r\n';
      if (line.startsWith('MAIL FROM:')) return '250 2.1.0 Ok\r\n';
      return undefined;
    },
  },
};

function setup(protocol: 'imap' | 'pop3', backends: Record<number, Behaviour>) {
  const clock = new FakeClock();
  const gate = recordingGate();
  const { dial, backends: opened } = fakeDialer(backends);
  const deps = handlerDeps(testConfig(), dial, clock, gate);
  const service = new ProtocolService({ ...deps, module: protocol === 'imap' ? imapModule : pop3Module });
  const [client, server] = socketPair();
  client.collect();
  let ended = false;
  client.on('end', () => { ended = true; });
  service.handle(server.asSocket(), accepted(protocol));
  return { clock, gate, deps, service, client, opened, get ended() { return ended; } };
}

async function say(clock: FakeClock, client: FakeSocket, line: string): Promise<void> {
  client.write(`${line}\r\n`);
  await clock.advance(0);
}

describe('session flows on in-memory sockets', () => {
  describe('IMAP', () => {
    it('logs in at the backend, answers with its capabilities and relays afterwards', async () => {
      const s = setup('imap', { [PORTS.imap]: IMAP_BACKEND });
      await s.clock.advance(0);
      assert.match(s.client.text, /^\* OK \[CAPABILITY [^\]]*\] /);
      await say(s.clock, s.client, 'a1 LOGIN alice secret');
      assert.match(s.client.text, /a1 OK \[CAPABILITY IMAP4rev1 IDLE\] Logged in\r\n/);
      assert.deepEqual(s.gate.reports, [['b1', 'ok']]);
      assert.equal(s.deps.sessions.list({ user: 'alice' })[0]?.info.phase, 'relay');
      await say(s.clock, s.client, 'a2 NOOP');
      assert.match(s.client.text, /a2 OK NOOP from backend\r\n$/);
      assert.match(s.opened[0]!.text, /a2 NOOP\r\n$/, 'the backend got the command byte for byte');
    });

    it('a client that pipes LOGIN and commands and half-closes during the login gets every reply, then both sides close', async () => {
      // The backend answers LOGIN when the test says so (below), NOOP at once.
      const slowLogin: Behaviour = {
        kind: 'script',
        script: {
          greeting: '* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] backend ready\r\n',
          reply: (line) => { const [tag, cmd] = line.split(' '); return cmd === 'NOOP' ? `${tag} OK NOOP from backend\r\n` : undefined; },
        },
      };
      const s = setup('imap', { [PORTS.imap]: slowLogin });
      await s.clock.advance(0);
      s.client.write('a1 LOGIN alice secret\r\na2 NOOP\r\n');
      s.client.end();
      await s.clock.advance(0);
      // net reads the FIN while the session is paused for the login and emits 'end' at once (read(0)); so does this.
      s.client.peer.read(0);
      await s.clock.advance(0);
      assert.equal(s.deps.sessions.list({})[0]?.info.phase, 'login', 'the FIN came while the backend login runs');
      const tag = /^(\S+) LOGIN /m.exec(s.opened[0]!.text)![1]!;
      s.opened[0]!.write(`${tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`);
      await s.clock.advance(0);
      assert.match(s.client.text, /a1 OK \[CAPABILITY IMAP4rev1 IDLE\] Logged in\r\na2 OK NOOP from backend\r\n$/);
      assert.ok(s.opened[0]!.text.endsWith('a2 NOOP\r\n'), 'the pipelined command reached the backend');
      assert.ok(s.ended, 'the client\'s FIN went on to the backend, which closed; then the proxy closed');
    });

    it('a client that half-closes during the failure delay of a refused login gets the refusal, then the session closes', async () => {
      const s = setup('imap', { [PORTS.imap]: IMAP_BACKEND });
      await s.clock.advance(0);
      s.client.write('a1 LOGIN alice wrong\r\n');
      await s.clock.advance(0);
      s.client.end();
      await s.clock.advance(0);
      s.client.peer.read(0);
      await s.clock.advance(0);
      assert.ok(!s.ended && !s.client.text.includes('a1 NO'), 'still in the failure delay');
      await s.clock.advance(5_000);
      assert.match(s.client.text, /a1 NO \[AUTHENTICATIONFAILED\] [^\r]*\r\n$/);
      assert.ok(s.ended);
      assert.equal(s.deps.sessions.size, 0);
    });

    it('says BYE at the pre-login deadline and closes', async () => {
      const s = setup('imap', { [PORTS.imap]: IMAP_BACKEND });
      await s.clock.advance(29_999);
      assert.ok(!s.ended);
      await s.clock.advance(1);
      assert.match(s.client.text, /\* BYE Disconnected for inactivity\r\n$/);
      assert.ok(s.ended);
      assert.equal(s.deps.sessions.size, 0);
    });

    it('a kick during the relay sends the protocol goodbye and ends both sides', async () => {
      const s = setup('imap', { [PORTS.imap]: IMAP_BACKEND });
      await s.clock.advance(0);
      await say(s.clock, s.client, 'a1 LOGIN alice secret');
      assert.equal(s.deps.sessions.kick({ user: 'alice' }, new ProxyError('BACKEND_DOWN')), 1);
      await s.clock.advance(0);
      assert.match(s.client.text, /\* BYE \[UNAVAILABLE\] Temporary failure, please try again later\r\n$/);
      assert.ok(s.ended);
      assert.ok(s.opened[0]!.destroyed || s.opened[0]!.writableEnded, 'backend connection closed');
      assert.equal(s.deps.sessions.size, 0);
    });

    it('a refused backend: temporary NO to the client, failure reported to health, session stays usable', async () => {
      const s = setup('imap', {});
      await s.clock.advance(0);
      await say(s.clock, s.client, 'a1 LOGIN alice secret');
      assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
      assert.deepEqual(s.gate.reports, [['b1', 'fail']]);
      assert.ok(!s.ended);
    });

    it('a backend that accepts and never greets: greetingTimeoutMs (not the whole budget) ends it, reported as a hang', async () => {
      const s = setup('imap', { [PORTS.imap]: { kind: 'silent' } });
      await s.clock.advance(0);
      await say(s.clock, s.client, 'a1 LOGIN alice secret');
      await s.clock.advance(1990);
      assert.doesNotMatch(s.client.text, /a1 /);
      await s.clock.advance(10);
      assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
      assert.deepEqual(s.gate.reports, [['b1', 'hang']]);
    });

    it('a wrong password never reaches the backend and is answered after the failure delay', async () => {
      const s = setup('imap', { [PORTS.imap]: IMAP_BACKEND });
      await s.clock.advance(0);
      await say(s.clock, s.client, 'a1 LOGIN alice wrong');
      assert.doesNotMatch(s.client.text, /a1 NO/);
      await s.clock.advance(100);
      assert.match(s.client.text, /a1 NO \[AUTHENTICATIONFAILED\] /);
      assert.equal(s.opened.length, 0);
    });
  });

  describe('POP3', () => {
    it('USER/PASS logs in at the backend and relays', async () => {
      const s = setup('pop3', { [PORTS.pop3]: POP3_BACKEND });
      await s.clock.advance(0);
      assert.match(s.client.text, /^\+OK /);
      await say(s.clock, s.client, 'USER alice');
      await say(s.clock, s.client, 'PASS secret');
      assert.match(s.client.text, /\+OK Logged in\r\n$/);
      await say(s.clock, s.client, 'STAT');
      assert.match(s.client.text, /\+OK 2 320\r\n$/);
      assert.deepEqual(s.gate.reports, [['b1', 'ok']]);
    });

    it('pre-login deadline, refused and silent backends', async () => {
      const idle = setup('pop3', { [PORTS.pop3]: POP3_BACKEND });
      await idle.clock.advance(30_000);
      assert.match(idle.client.text, /-ERR Disconnected for inactivity\r\n$/);
      assert.ok(idle.ended);

      const refused = setup('pop3', {});
      await refused.clock.advance(0);
      await say(refused.clock, refused.client, 'USER alice');
      await say(refused.clock, refused.client, 'PASS secret');
      assert.match(refused.client.text, /-ERR \[SYS\/TEMP\] /);
      assert.deepEqual(refused.gate.reports, [['b1', 'fail']]);

      const silent = setup('pop3', { [PORTS.pop3]: { kind: 'silent' } });
      await silent.clock.advance(0);
      await say(silent.clock, silent.client, 'USER alice');
      await say(silent.clock, silent.client, 'PASS secret');
      await silent.clock.advance(2000);
      assert.match(silent.client.text, /-ERR \[SYS\/TEMP\] /);
      assert.deepEqual(silent.gate.reports, [['b1', 'hang']]);
    });
  });

  describe('submission', () => {
    function smtpSetup(backends: Record<number, Behaviour>) {
      const clock = new FakeClock();
      const gate = recordingGate();
      const { dial, backends: opened } = fakeDialer(backends);
      const deps = handlerDeps(testConfig(), dial, clock, gate);
      const logs: Array<Record<string, unknown>> = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => { logs.push(JSON.parse(line) as Record<string, unknown>); } });
      const service = createSubmissionService({ config: deps.config, directory: deps.directory, gate, sessions: deps.sessions, logger, penalty: deps.penalty, clock, dial });
      const [client, server] = socketPair();
      client.collect();
      service.handle(server.asSocket(), accepted('submission'));
      return { clock, gate, client, opened, logs, sessions: deps.sessions };
    }
    /** smtp-server greets after its own 100 ms early-talker timer (real time, not ours): poll until `re` shows up. */
    async function until(s: { client: FakeSocket; clock: FakeClock }, re: RegExp): Promise<void> {
      for (let i = 0; i < 300 && !re.test(s.client.text); i++) {
        await s.clock.advance(0);
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.match(s.client.text, re);
    }
    /** Greeting, EHLO and AUTH PLAIN as `password`; waits for 235 only with the right password. */
    async function authenticated<S extends { client: FakeSocket; clock: FakeClock }>(s: S, password = 'secret'): Promise<S> {
      await until(s, /^220 /);
      s.client.write('EHLO client.test\r\n');
      await until(s, /250 /);
      s.client.write(`AUTH PLAIN ${Buffer.from(`\0alice\0${password}`).toString('base64')}\r\n`);
      if (password === 'secret') await until(s, /235 /);
      return s;
    }

    it('AUTH, then MAIL opens the backend through the pipeline (EHLO, AUTH PLAIN as the user)', async () => {
      const s = await authenticated(smtpSetup({ [PORTS.submission]: SUBMISSION_BACKEND }));
      s.client.write('MAIL FROM:<alice@example.org>\r\n');
      await until(s, /235 [^\r]*\r\n250 [^\r]*\r\n$/);
      assert.deepEqual(s.gate.reports, [['b1', 'ok']]);
      assert.match(s.opened[0]!.text, /^EHLO \S+\r\nAUTH PLAIN \S+\r\nMAIL FROM:<alice@example.org>\r\n$/);
    });

    it('a MAIL FROM with malformed UTF-8 is refused 553 5.1.7 before any backend is dialled; a good one then works', async () => {
      const s = await authenticated(smtpSetup({ [PORTS.submission]: SUBMISSION_BACKEND }));
      s.client.write(Buffer.concat([Buffer.from('MAIL FROM:<al'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('ce@example.org>\r\n')]));
      await until(s, /553 5\.1\.7 [^\r]*\r\n$/);
      assert.equal(s.opened.length, 0, 'no backend dialled');
      s.client.write('MAIL FROM:<alice@example.org>\r\n');
      await until(s, /553 [^\r]*\r\n250 [^\r]*\r\n$/);
      assert.match(s.opened[0]!.text, /MAIL FROM:<alice@example.org>\r\n$/);
    });

    it('a wrong password is answered after the failure delay on the injected clock; no backend is dialled', async () => {
      const s = await authenticated(smtpSetup({ [PORTS.submission]: SUBMISSION_BACKEND }), 'wrong');
      for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
      assert.doesNotMatch(s.client.text, /535 /, 'not before the delay');
      await s.clock.advance(100);
      await until(s, /535 [^\r]*\r\n$/);
      assert.equal(s.opened.length, 0);
    });

    it('one summary record per session when it ends (user, reason, duration), as for IMAP/POP3', async () => {
      const s = await authenticated(smtpSetup({ [PORTS.submission]: SUBMISSION_BACKEND }));
      await s.clock.advance(250);
      s.client.write('QUIT\r\n');
      for (let i = 0; i < 300 && s.sessions.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
      const summaries = s.logs.filter((l) => l['summary'] === true);
      assert.equal(summaries.length, 1, JSON.stringify(s.logs));
      assert.equal(summaries[0]!['protocol'], 'submission');
      assert.equal(summaries[0]!['user'], 'alice');
      assert.equal(summaries[0]!['msg'], 'session');
      assert.equal(summaries[0]!['client'], '192.0.2.9', 'the address alone, as in IMAP/POP3 records');
      assert.ok(Number(summaries[0]!['durationMs']) >= 250, JSON.stringify(summaries[0]));
    });

    it('mailproxy_sessions_active counts submission sessions: prelogin, relay after AUTH, none after QUIT', async () => {
      const active = async (phase: string): Promise<number> => (await registry.getSingleMetric('mailproxy_sessions_active')!.get()).values.find((v) => v.labels['protocol'] === 'submission' && v.labels['phase'] === phase)?.value ?? 0;
      const [pre0, relay0] = [await active('prelogin'), await active('relay')];
      const setup = smtpSetup({ [PORTS.submission]: SUBMISSION_BACKEND });
      assert.equal(await active('prelogin'), pre0 + 1);
      const s = await authenticated(setup);
      assert.deepEqual([await active('prelogin'), await active('relay')], [pre0, relay0 + 1]);
      s.client.write('QUIT\r\n');
      for (let i = 0; i < 300 && s.sessions.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual([await active('prelogin'), await active('relay')], [pre0, relay0]);
    });

    it('a refused backend: MAIL gets a temporary failure, health hears it', async () => {
      const s = await authenticated(smtpSetup({}));
      s.client.write('MAIL FROM:<alice@example.org>\r\n');
      await until(s, /\r\n4\d\d [^\r]*\r\n$/);
      assert.deepEqual(s.gate.reports, [['b1', 'fail']]);
    });
  });

  describe('SMTP and LMTP greetings', () => {
    /** The 220 line a service greets with (smtp-server greets after its own 100 ms early-talker timer, real time). */
    async function greeting(create: typeof createLmtpService, protocol: 'smtp' | 'submission', config = testConfig()): Promise<string> {
      const clock = new FakeClock();
      const deps = handlerDeps(config, fakeDialer({}).dial, clock);
      const service = create({ config: deps.config, directory: deps.directory, gate: deps.gate, sessions: deps.sessions, logger: pino({ level: 'silent' }), clock, dial: fakeDialer({}).dial });
      const [client, server] = socketPair();
      client.collect();
      service.handle(server.asSocket(), accepted(protocol));
      for (let i = 0; i < 300 && !/\r\n/.test(client.text); i++) await new Promise((r) => setTimeout(r, 10));
      client.destroy();
      return client.text.split('\r\n')[0]!;
    }

    it('LMTP greets with the name the SMTP listeners use: smtp.hostname, else the machine\'s host name', async () => {
      assert.equal(await greeting(createLmtpService, 'smtp'), `220 ${os.hostname()} LMTP`);
      assert.equal(await greeting(createInboundService, 'smtp'), `220 ${os.hostname()} ESMTP`);
      assert.equal(await greeting(createSubmissionService, 'submission'), `220 ${os.hostname()} ESMTP`);
      const named = testConfig({ smtp: { hostname: 'mx.proxy.test' } });
      assert.equal(await greeting(createLmtpService, 'smtp', named), '220 mx.proxy.test LMTP');
      assert.equal(await greeting(createInboundService, 'smtp', named), '220 mx.proxy.test ESMTP');
    });
  });

  describe('OAuth: a refused token', () => {
    // The RFC 7628 error challenge is itself the verdict, so it waits out the failure delay like any failure answer (a
    // client that read it at once could hang up and retry without ever waiting); the final failure then comes at once.
    const cases = [
      ['IMAP', imapModule, 'imap', (t: string) => `a1 AUTHENTICATE OAUTHBEARER ${t}`, /\+ eyJ[^\r]*\r\n$/, 'AQ==', /a1 NO \[AUTHENTICATIONFAILED\] [^\r]*\r\n$/],
      ['ManageSieve', sieveModule, 'sieve', (t: string) => `AUTHENTICATE "OAUTHBEARER" "${t}"`, /"eyJ[^\r]*"\r\n$/, '"AQ=="', /NO "Authentication failed[^\r]*\r\n$/],
    ] as const;
    for (const [name, module, protocol, command, challenge, answer, failure] of cases) {
      it(`${name}: the error challenge after the failure delay, the final failure right after the client's answer`, async () => {
        const clock = new FakeClock();
        const settings = { requireTlsForAuth: false, limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 100, preAuthDeadlineMs: 30_000 } };
        const config = testConfig({ sieve: settings, oauth: { jwt: { jwksFile: '/nonexistent', issuer: 'i', audience: 'a' } } });
        const service = new ProtocolService({ ...handlerDeps(config, fakeDialer({}).dial, clock), module });
        const [client, server] = socketPair();
        client.collect();
        service.handle(server.asSocket(), accepted(protocol as 'imap'));
        await clock.advance(0);
        await say(clock, client, command(encodeTokenResponse('OAUTHBEARER', 'alice', 'not-a-valid-token')));
        await clock.advance(99);
        assert.doesNotMatch(client.text, challenge, 'nothing before the delay');
        await clock.advance(1);
        assert.match(client.text, challenge);
        await say(clock, client, answer);
        assert.match(client.text, failure);
      });
    }
  });
});
