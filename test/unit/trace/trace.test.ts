// Proves trace on demand's pure parts: the table (match, expiry, stop, replace), credential redaction for IMAP, POP3
// and SMTP (literals and SASL continuations included), and one session's trace (buffer until the user is known,
// nothing for others, first KiB after login, ends with its entry). Streams stand in for sockets; no network.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { TraceTable, parseTraceRequest } from '../../../src/trace/table.js';
import { TraceRedactor } from '../../../src/trace/redact.js';
import { SessionTrace, RELAY_TRACE_BYTES } from '../../../src/trace/session-trace.js';

const b = (s: string) => Buffer.from(s);

function capture(level = 'warn') {
  const records: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) records.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  return { records, logger: pino({ level }, sink) };
}
const flush = () => new Promise((r) => setImmediate(r));

describe('trace table', () => {
  it('matches case-insensitively any of the names given, until the entry expires; minutes 0 stops it', () => {
    let now = 1_000_000;
    const t = new TraceTable(() => now);
    assert.equal(t.any, false);
    t.set('Alice', 2);
    assert.equal(t.any, true);
    assert.equal(t.match(undefined, 'alice')?.user, 'Alice');
    assert.equal(t.match('bob'), undefined);
    now += 2 * 60_000 - 1;
    assert.ok(t.active('ALICE'));
    now += 1;
    assert.equal(t.match('alice'), undefined);
    assert.equal(t.any, false);
    t.set('bob', 5);
    t.set('bob', 0);
    assert.deepEqual(t.list(), []);
    t.replace([{ user: 'carol', until: now + 1000 }, { user: 'old', until: now - 1 }]);
    assert.deepEqual(t.list().map((e) => e.user), ['carol']);
  });

  it('validates the request body', () => {
    assert.deepEqual(parseTraceRequest({ user: ' alice ', minutes: 5 }), { user: 'alice', minutes: 5 });
    assert.deepEqual(parseTraceRequest({ user: 'alice' }), { user: 'alice', minutes: 10 });
    for (const bad of [null, {}, { user: '' }, { user: 'a\nb' }, { user: 'a', minutes: -1 }, { user: 'a', minutes: 1e9 }, { user: 'a', minutes: '5' }]) {
      assert.equal(typeof parseTraceRequest(bad), 'string', JSON.stringify(bad));
    }
  });
});

describe('trace redaction', () => {
  it('IMAP: LOGIN keeps the user, drops the password; literals and AUTHENTICATE continuations are redacted until the tagged reply', () => {
    const r = new TraceRedactor('imap');
    assert.deepEqual(r.fromClient(b('a1 CAPABILITY\r\na2 LOGIN alice s3cret\r\n')), ['a1 CAPABILITY', 'a2 LOGIN alice [redacted]']);
    assert.deepEqual(r.fromClient(b('a3 login "alice" "pa ss"\r\n')), ['a3 login "alice" [redacted]']);
    assert.deepEqual(r.fromClient(b('a4 LOGIN {5}\r\n')), ['a4 LOGIN {5} [redacted]']);
    r.fromServer(b('+ Ready\r\n'));
    assert.deepEqual(r.fromClient(b('alice {6}\r\n')), ['[redacted 9 bytes]']);
    r.fromServer(b('+ Ready\r\n'));
    assert.deepEqual(r.fromClient(b('s3cret\r\n')), ['[redacted 6 bytes]']);
    assert.deepEqual(r.fromServer(b('a4 NO [AUTHENTICATIONFAILED] Authentication failed\r\n')), ['a4 NO [AUTHENTICATIONFAILED] Authentication failed']);
    assert.deepEqual(r.fromClient(b('a5 AUTHENTICATE PLAIN AGFsaWNlAHMzY3JldA==\r\n')), ['a5 AUTHENTICATE PLAIN [redacted]']);
    assert.deepEqual(r.fromClient(b('a5b NOOP\r\n')), ['[redacted 8 bytes]']);
    r.fromServer(b('a5 NO [AUTHENTICATIONFAILED] Authentication failed\r\n'));
    assert.deepEqual(r.fromClient(b('a6 AUTHENTICATE LOGIN\r\n')), ['a6 AUTHENTICATE LOGIN']);
    r.fromServer(b('+ VXNlcm5hbWU6\r\n'));
    assert.deepEqual(r.fromClient(b('YWxpY2U=\r\nczNjcmV0\r\n')), ['[redacted 8 bytes]', '[redacted 8 bytes]']);
    r.fromServer(b('a6 OK done\r\n'));
    assert.deepEqual(r.fromClient(b('a7 SELECT INBOX\r\n')), ['a7 SELECT INBOX']);
  });

  it('POP3 PASS, APOP and AUTH; SMTP AUTH with 334 continuations; lines split across chunks', () => {
    const p = new TraceRedactor('pop3');
    assert.deepEqual(p.fromClient(b('USER alice\r\nPA')), ['USER alice']);
    assert.deepEqual(p.fromClient(b('SS s3cret\r\nAPOP alice 0123abcd\r\n')), ['PASS [redacted]', 'APOP alice [redacted]']);
    assert.deepEqual(p.fromClient(b('AUTH PLAIN\r\n')), ['AUTH PLAIN']);
    p.fromServer(b('+ \r\n'));
    assert.deepEqual(p.fromClient(b('AGFsaWNlAHMzY3JldA==\r\n')), ['[redacted 20 bytes]']);
    const s = new TraceRedactor('smtp');
    assert.deepEqual(s.fromClient(b('EHLO x\r\nAUTH LOGIN\r\n')), ['EHLO x', 'AUTH LOGIN']);
    s.fromServer(b('250-mx.example.test\r\n250 AUTH LOGIN PLAIN\r\n334 VXNlcm5hbWU6\r\n'));
    assert.deepEqual(s.fromClient(b('YWxpY2U=\r\n')), ['[redacted 8 bytes]']);
    s.fromServer(b('235 2.7.0 ok\r\n'));
    assert.deepEqual(s.fromClient(b('MAIL FROM:<a@b>\r\n')), ['MAIL FROM:<a@b>']);
  });

  it('a command pipelined before the login is answered first: its reply does not end the redaction (IMAP, POP3, SMTP, ManageSieve)', () => {
    // Seen from outside: `x1 ID …` and `a LOGIN {4}` in one write; the reply to x1 came before `+ Ready`, and the
    // password literal that followed was logged in clear. The same for NOOP + AUTHENTICATE, CAPA + AUTH, EHLO + AUTH.
    const i = new TraceRedactor('imap');
    assert.deepEqual(i.fromClient(b('x1 ID ("name" "mutt")\r\na LOGIN {4}\r\n')), ['x1 ID ("name" "mutt")', 'a LOGIN {4} [redacted]']);
    i.fromServer(b('* ID ("name" "mailproxy")\r\nx1 OK ID completed\r\n+ Ready for literal data\r\n'));
    assert.deepEqual(i.fromClient(b('erin {6}\r\n')), ['[redacted 8 bytes]']);
    i.fromServer(b('+ Ready for literal data\r\n'));
    assert.deepEqual(i.fromClient(b('s3cret\r\n')), ['[redacted 6 bytes]']);
    i.fromServer(b('* CAPABILITY IMAP4rev1\r\na OK Logged in\r\n'));
    assert.deepEqual(i.fromClient(b('b SELECT INBOX\r\n')), ['b SELECT INBOX']);
    assert.deepEqual(i.fromClient(b('x2 NOOP\r\nc AUTHENTICATE PLAIN\r\n')), ['x2 NOOP', 'c AUTHENTICATE PLAIN']);
    i.fromServer(b('x2 OK NOOP completed\r\n+ \r\n'));
    assert.deepEqual(i.fromClient(b('AGFsaWNlAHMzY3JldA==\r\n')), ['[redacted 20 bytes]']);
    const p = new TraceRedactor('pop3');
    p.fromServer(b('+OK ready\r\n'));
    assert.deepEqual(p.fromClient(b('CAPA\r\nAUTH PLAIN\r\n')), ['CAPA', 'AUTH PLAIN']);
    p.fromServer(b('+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\n.\r\n+ \r\n'));
    assert.deepEqual(p.fromClient(b('AGFsaWNlAHMzY3JldA==\r\n')), ['[redacted 20 bytes]']);
    p.fromServer(b('+OK Logged in.\r\n'));
    assert.deepEqual(p.fromClient(b('STAT\r\n')), ['STAT']);
    const s = new TraceRedactor('smtp');
    s.fromServer(b('220 mx ESMTP\r\n'));
    assert.deepEqual(s.fromClient(b('EHLO x\r\nAUTH PLAIN\r\n')), ['EHLO x', 'AUTH PLAIN']);
    s.fromServer(b('250-mx\r\n250 AUTH PLAIN\r\n334 \r\n'));
    assert.deepEqual(s.fromClient(b('AGFsaWNlAHMzY3JldA==\r\n')), ['[redacted 20 bytes]']);
    s.fromServer(b('235 2.7.0 ok\r\n'));
    assert.deepEqual(s.fromClient(b('MAIL FROM:<a@b>\r\n')), ['MAIL FROM:<a@b>']);
    const m = new TraceRedactor('sieve');
    assert.deepEqual(m.fromClient(b('CAPABILITY\r\nAUTHENTICATE "PLAIN"\r\n')), ['CAPABILITY', 'AUTHENTICATE "PLAIN" [redacted]']);
    m.fromServer(b('"SASL" "PLAIN"\r\nOK\r\n""\r\n'));
    assert.deepEqual(m.fromClient(b('"AGFsaWNlAHMzY3JldA=="\r\n')), ['[redacted 22 bytes]']);
  });

  it('control bytes are escaped and long lines cut', () => {
    const r = new TraceRedactor('imap');
    assert.deepEqual(r.fromClient(b('a NOOP \x01\x1b\r\n')), ['a NOOP \\x01\\x1b']);
    const [long] = r.fromClient(b(`a ${'x'.repeat(2000)}\r\n`));
    assert.match(long ?? '', /…\(\+1490 chars\)$/);
  });
});

describe('session trace', () => {
  it('buffers the pre-login dialogue until the user is known, then logs it redacted at info even when log.level is warn', async () => {
    const { records, logger } = capture('warn');
    const table = new TraceTable();
    table.set('alice', 5);
    const t = new SessionTrace(table, 'imap', logger);
    t.toClient('* OK ready\r\n');
    t.fromClient(b('a1 LOGIN alice wrong-password\r\n'));
    t.identify('alice');
    t.toClient('a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n');
    t.backendStart({ backend: 'backend-a' });
    t.toBackend('b1 LOGIN alice s3cret\r\n');
    t.fromBackend('b1 OK logged in\r\n');
    await flush();
    const lines = records.filter((r) => r['msg'] === 'trace').map((r) => `${String(r['dir'])}: ${String(r['line'])}`);
    assert.deepEqual(lines, [
      'proxy: * OK ready',
      'client: a1 LOGIN alice [redacted]',
      'proxy: a1 NO [AUTHENTICATIONFAILED] Authentication failed',
      'to-backend: b1 LOGIN alice [redacted]',
      'from-backend: b1 OK logged in',
    ]);
    assert.ok(records.every((r) => r['trace'] === true && r['level'] === 30));
    assert.doesNotMatch(JSON.stringify(records), /wrong-password|s3cret/);
  });

  it('logs nothing for a user not traced, and nothing at all while no trace is active', async () => {
    const { records, logger } = capture('info');
    const table = new TraceTable();
    const idle = new SessionTrace(table, 'pop3', logger);
    assert.equal(idle.on, false);
    table.set('alice', 5);
    const other = new SessionTrace(table, 'pop3', logger);
    other.fromClient(b('USER bob\r\nPASS x\r\n'));
    other.identify('bob');
    other.loggedIn();
    assert.equal(other.on, false);
    other.fromClient(b('USER alice\r\n'));
    idle.fromClient(b('USER alice\r\n'));
    await flush();
    assert.deepEqual(records, []);
  });

  it('logs the first KiB each way after login, then removes its taps; the trace ends with its entry', async () => {
    const { records, logger } = capture('info');
    let now = Date.now();
    const table = new TraceTable(() => now);
    table.set('alice', 1);
    const t = new SessionTrace(table, 'imap', logger);
    t.identify('alice');
    const forwarded: string[] = [];
    const relay = { up(d: Buffer) { forwarded.push(`up ${d.length}`); }, down(d: Buffer) { forwarded.push(`down ${d.length}`); } };
    const client = { write(d: Buffer) { forwarded.push(`write ${d.length}`); return true; } };
    const { up } = relay;
    const { write } = client;
    t.tapRelay(relay, client);
    relay.up(b('a2 SELECT INBOX\r\n'));
    client.write(b(`* 1 EXISTS\r\n${'y'.repeat(RELAY_TRACE_BYTES)}\r\n`));
    assert.equal(client.write, write, 'the client write is restored after its KiB');
    relay.up(b('a3 NOOP\r\n'));
    now += 61_000;
    relay.up(b('a4 NOOP\r\n'));
    assert.equal(relay.up, up, 'the up path is restored when the trace ends');
    assert.deepEqual(forwarded, ['up 17', `write ${RELAY_TRACE_BYTES + 14}`, 'up 9', 'up 9']);
    await flush();
    const traced = records.filter((r) => r['msg'] === 'trace').map((r) => `${String(r['dir'])}: ${String(r['line']).slice(0, 20)}`);
    assert.deepEqual(traced, ['client: a2 SELECT INBOX', 'backend: * 1 EXISTS', 'backend: yyyyyyyyyyyyyyyyyyyy', 'backend: [first 1024 bytes af', 'client: a3 NOOP']);
    assert.ok(records.some((r) => r['msg'] === 'trace: ended for this session'));
  });
});
