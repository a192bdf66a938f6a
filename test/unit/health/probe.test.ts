// Proves one probe against scripted fake sockets: greetings per protocol, identity, timeouts, deep probe.
// Must not open real sockets.
import assert from 'node:assert/strict';
import { routeForBackend, type RouteProtocol } from '../../../src/directory/backends.js';
import { normaliseIdentity, probeOnce, type Dial } from '../../../src/health/probe.js';
import { FakeClock, flush } from './fake-clock.js';
import { FakeSocket, testConfig } from './helpers.js';

const config = testConfig({ backends: { x: { host: '127.0.0.1', imap: { port: 1 }, pop3: { port: 2 }, submission: { port: 3 }, lmtp: { port: 4 }, smtp: { port: 5 } } } });

function run(protocol: RouteProtocol, script: (s: FakeSocket, clock: FakeClock) => Promise<void> | void, extra: { deep?: (timeoutMs: number) => Promise<void>; timeoutMs?: number; dial?: Dial } = {}) {
  const clock = new FakeClock();
  const sock = new FakeSocket();
  const route = routeForBackend(config, 'x', protocol);
  const p = probeOnce(route, { timeoutMs: extra.timeoutMs ?? 2000, clock, dial: extra.dial ?? (() => sock), ...(extra.deep ? { deepProbe: (_r, t) => extra.deep!(t) } : {}) });
  return (async () => {
    await flush();
    await script(sock, clock);
    return { result: await p, sock };
  })();
}

describe('health/probe', () => {
  it('imap: * OK greeting is a success; LOGOUT is sent; identity is normalised', async () => {
    const { result, sock } = await run('imap', async (s, clock) => { await clock.advance(7); s.serve('* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.\r\n'); });
    assert.equal(result.ok, true);
    assert.equal(result.identity, 'Dovecot (Debian) ready.');
    assert.equal(result.latencyMs, 7);
    assert.equal(result.backend, 'x');
    assert.equal(result.protocol, 'imap');
    assert.equal(sock.written, 'p1 LOGOUT\r\n');
    assert.equal(sock.ended, true);
  });

  it('imap: the greeting may arrive split at any byte', async () => {
    const g = '* OK mail1.example.net IMAP ready\r\n';
    for (let i = 1; i < g.length; i++) {
      const { result } = await run('imap', async (s) => { s.serve(g.slice(0, i)); await flush(); s.serve(g.slice(i)); });
      assert.equal(result.ok, true, `split at ${i}`);
      assert.equal(result.identity, 'mail1.example.net IMAP ready');
    }
  });

  it('imap: * BYE greeting is a failure', async () => {
    const { result } = await run('imap', (s) => s.serve('* BYE Too many connections\r\n'));
    assert.equal(result.ok, false);
    assert.equal(result.failure, 'bad_greeting');
    assert.match(result.error!, /Too many connections/);
  });

  it('pop3: +OK is a success (APOP timestamp masked), -ERR a failure', async () => {
    const ok = await run('pop3', (s) => s.serve('+OK Dovecot ready. <123.456.789@host>\r\n'));
    assert.equal(ok.result.ok, true);
    assert.equal(ok.result.identity, 'Dovecot ready.');
    assert.equal(ok.sock.written, 'QUIT\r\n');
    const bad = await run('pop3', (s) => s.serve('-ERR go away\r\n'));
    assert.equal(bad.result.ok, false);
  });

  it('smtp/lmtp/submission: multi-line 220 is read to its last line; 421/554 fail', async () => {
    for (const p of ['smtp', 'lmtp', 'submission'] as const) {
      const { result, sock } = await run(p, async (s) => { s.serve('220-b.example.test ESMTP\r\n'); await flush(); s.serve('220 b.example.test ready 12:34:56\r\n'); });
      assert.equal(result.ok, true, p);
      assert.equal(result.identity, 'b.example.test ESMTP b.example.test ready #');
      assert.equal(sock.written, 'QUIT\r\n');
    }
    assert.equal((await run('smtp', (s) => s.serve('421 4.3.2 shutting down\r\n'))).result.ok, false);
    assert.equal((await run('smtp', (s) => s.serve('554 no\r\n'))).result.ok, false);
    assert.equal((await run('smtp', (s) => s.serve('garbage\r\n'))).result.ok, false);
  });

  it('a silent server (SIGSTOP) fails at the timeout and the socket is destroyed', async () => {
    const { result, sock } = await run('imap', (_s, clock) => clock.advance(2000), { timeoutMs: 2000 });
    assert.equal(result.ok, false);
    assert.equal(result.failure, 'timeout');
    assert.equal(result.latencyMs, 2000);
    assert.equal(sock.destroyed, true);
  });

  it('connect errors and early closes are failures with the error code', async () => {
    const refused = await run('imap', (s) => { s.destroy(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })); });
    assert.equal(refused.result.ok, false);
    assert.equal(refused.result.failure, 'connect');
    assert.match(refused.result.error!, /^ECONNREFUSED/);
    const closed = await run('imap', (s) => { s.push(null); s.destroy(); });
    assert.equal(closed.result.ok, false);
    const thrown = await run('imap', () => undefined, { dial: () => { throw new Error('no route'); } });
    assert.equal(thrown.result.failure, 'connect');
  });

  it('an endless greeting line is cut off', async () => {
    const { result } = await run('imap', (s) => s.serve('* OK ' + 'x'.repeat(5000)));
    assert.equal(result.ok, false);
    assert.equal(result.failure, 'bad_greeting');
  });

  it('deep probe (imap only) runs after the greeting with the remaining budget', async () => {
    let budget = 0;
    const good = await run('imap', async (s, clock) => { await clock.advance(500); s.serve('* OK hi\r\n'); }, { deep: async (t) => { budget = t; } });
    assert.equal(good.result.ok, true);
    assert.equal(good.result.deep, true);
    assert.equal(budget, 1500);
    const bad = await run('imap', (s) => s.serve('* OK hi\r\n'), { deep: async () => { throw new Error('AUTHENTICATIONFAILED'); } });
    assert.equal(bad.result.ok, false);
    assert.equal(bad.result.failure, 'deep');
    assert.equal(bad.result.identity, 'hi');
    const pop = await run('pop3', (s) => s.serve('+OK hi\r\n'), { deep: async () => { throw new Error('not for pop3'); } });
    assert.equal(pop.result.ok, true);
    const slow = await run('imap', async (s, clock) => { s.serve('* OK hi\r\n'); await flush(); await clock.advance(2000); }, { deep: () => new Promise(() => undefined) });
    assert.equal(slow.result.failure, 'timeout');
    assert.match(slow.result.error!, /deep probe/);
  });

  it('normaliseIdentity strips status words, response codes and per-connection noise', () => {
    assert.equal(normaliseIdentity(['* OK [CAPABILITY IMAP4rev1 ID] imap.example.org Cyrus IMAP v3.4 server ready']), 'imap.example.org Cyrus IMAP v3.4 server ready');
    assert.equal(normaliseIdentity(['220 mx ESMTP Sendmail 8.15; Mon, 1 Jan 2024 10:11:12 +0100']), 'mx ESMTP Sendmail 8.15; #');
    // The day changes, the identity does not (a changed identity ends the sessions on the old node).
    const days = [
      ['* OK [CAPABILITY IMAP4rev1] host IMAP4rev1 2007f.404 at Sun, 6 Dec 2026 23:59:59 -0500 (EST)', '* OK [CAPABILITY IMAP4rev1] host IMAP4rev1 2007f.404 at Mon, 7 Dec 2026 00:00:01 -0500 (EST)'],
      ['220 mx ESMTP ready 2026-12-06T23:59:59.123Z', '220 mx ESMTP ready 2026-12-07T00:00:00.001Z'],
      ['+OK pop ready Dec 6 2026 23:59', '+OK pop ready Dec 7 2026 00:00'],
      ['220 mx ESMTP Postfix (Debian) 6-Dec-2026', '220 mx ESMTP Postfix (Debian) 7-Dec-2026'],
    ];
    for (const [before, after] of days) assert.equal(normaliseIdentity([after!]), normaliseIdentity([before!]), before);
    assert.equal(normaliseIdentity(['* OK host IMAP4rev1 2007f.404 at Sun, 6 Dec 2026 23:59:59 -0500 (EST)']), 'host IMAP4rev1 2007f.404 at #');
    assert.equal(normaliseIdentity(['* OK SunOS Monitor Saturn ready']), 'SunOS Monitor Saturn ready', 'words that start like a day stay');
    // Names and versions stay apart.
    assert.notEqual(normaliseIdentity(['* OK node-a Dovecot ready.']), normaliseIdentity(['* OK node-b Dovecot ready.']));
    assert.notEqual(normaliseIdentity(['* OK mail Cyrus IMAP v3.4 ready']), normaliseIdentity(['* OK mail Cyrus IMAP v3.6 ready']));
    assert.equal(normaliseIdentity(['+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>']), 'POP3 ready');
    assert.equal(normaliseIdentity(['* OK \u0001weird\u00ff']), '?weird?');
  });
});
