// Proves the SMTP trace tap on a stand-in socket: the dialogue is recorded with AUTH redacted, message data only up to its
// first KiB (the end-of-data line found across reads, pipelined commands after it recorded again), nothing after a
// STARTTLS go-ahead until the TLS socket is attached, the bytes written are untouched, and nothing for untraced users.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { TraceTable } from '../../../src/trace/table.js';
import { RELAY_TRACE_BYTES, SessionTrace } from '../../../src/trace/session-trace.js';
import { SmtpTraceTap } from '../../../src/trace/smtp-tap.js';

function capture() {
  const records: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) records.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  return { records, logger: pino({ level: 'warn' }, sink) };
}
const flush = () => new Promise((r) => setImmediate(r));

/** A socket stand-in: `client()` delivers bytes as reads, `write` is what smtp-server would call. */
class FakeSocket extends EventEmitter {
  readonly written: string[] = [];
  write(d: string | Buffer): boolean { this.written.push(d.toString()); return true; }
  client(s: string | Buffer): void { this.emit('data', Buffer.from(s)); }
}

function session(user: string) {
  const table = new TraceTable();
  table.set('alice', 5);
  const { records, logger } = capture();
  const trace = new SessionTrace(table, 'smtp', logger, { conn: 'c1' });
  const tap = new SmtpTraceTap(trace);
  const socket = new FakeSocket();
  tap.attach(socket);
  socket.write('220 proxy ESMTP\r\n');
  socket.client('EHLO client.example\r\n');
  socket.write('250-proxy Hello\r\n250 AUTH PLAIN LOGIN\r\n');
  socket.client(`AUTH PLAIN ${Buffer.from(`\0${user}\0s3cret-pw`).toString('base64')}\r\n`);
  trace.identify(user);
  socket.write('235 2.7.0 Authentication successful\r\n');
  trace.loggedIn();
  const lines = () => records.filter((r) => r['msg'] === 'trace').map((r) => `${String(r['dir'])}: ${String(r['line'])}`);
  return { trace, tap, socket, records, lines };
}

describe('SMTP trace tap', () => {
  it('records the dialogue with AUTH redacted and only the first KiB of message data', async () => {
    const { socket, lines, records } = session('alice');
    socket.client('MAIL FROM:<alice@example.test>\r\n');
    socket.write('250 2.1.0 Ok\r\n');
    socket.client('DATA\r\n');
    socket.write('354 End data with <CR><LF>.<CR><LF>\r\n');
    const body = `Subject: t\r\n\r\n${'y'.repeat(70)}\r\n`.repeat(40);
    assert.ok(body.length > RELAY_TRACE_BYTES * 2);
    // The end-of-data line split across three reads, a pipelined QUIT behind it.
    socket.client(body.slice(0, 600));
    socket.client(body.slice(600) + '\r');
    socket.client('\n.');
    socket.client('\r\nQUIT\r\n');
    socket.write('250 2.0.0 Ok: queued\r\n');
    await flush();
    const got = lines();
    assert.deepEqual(got.slice(0, 6), [
      'proxy: 220 proxy ESMTP',
      'client: EHLO client.example',
      'proxy: 250-proxy Hello',
      'proxy: 250 AUTH PLAIN LOGIN',
      'client: AUTH PLAIN [redacted]',
      'proxy: 235 2.7.0 Authentication successful',
    ]);
    const joined = got.join('\n');
    assert.doesNotMatch(JSON.stringify(records), /s3cret-pw|czNjcmV0LXB3/);
    assert.match(joined, /client: \[message data after the first 1024 bytes not logged\]/);
    const dataLines = got.filter((l) => l.startsWith('client: yyyy') || l.startsWith('client: Subject'));
    assert.ok(dataLines.join('').length <= RELAY_TRACE_BYTES + 200, 'no more than the first KiB of the message');
    assert.ok(got.indexOf('client: QUIT') > got.indexOf('proxy: 354 End data with <CR><LF>.<CR><LF>'), 'the command after the message is recorded');
    assert.equal(got.at(-1), 'proxy: 250 2.0.0 Ok: queued');
    // The bytes themselves went out unchanged.
    assert.equal(socket.written.at(-1), '250 2.0.0 Ok: queued\r\n');
  });

  it('stops at a STARTTLS go-ahead (the next bytes are TLS) and goes on on the attached TLS socket', async () => {
    const { socket, tap, lines } = session('alice');
    socket.client('STARTTLS\r\n');
    socket.write('220 2.0.0 Ready to start TLS\r\n');
    socket.client(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
    const tls = new FakeSocket();
    tap.attach(tls);
    tls.client('EHLO again.example\r\n');
    tls.write('250 proxy\r\n');
    tap.close();
    tls.client('NOOP\r\n');
    await flush();
    const got = lines();
    assert.deepEqual(got.slice(-4), ['client: STARTTLS', 'proxy: 220 2.0.0 Ready to start TLS', 'client: EHLO again.example', 'proxy: 250 proxy']);
    assert.equal(Object.hasOwn(socket, 'write'), false, 'the plain socket\'s write is its own again');
  });

  it('records nothing for a user who is not traced', async () => {
    const { socket, lines, records } = session('bob');
    socket.client('MAIL FROM:<bob@example.test>\r\n');
    await flush();
    assert.deepEqual(lines(), []);
    assert.equal(records.length, 0);
  });
});
