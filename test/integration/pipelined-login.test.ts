// Proves bytes pipelined behind a login reach real Dovecot: IMAP LOGIN+APPEND 2 MiB {n+} byte-identical, POP3 USER/PASS+commands, SMTP AUTH+MAIL/RCPT/DATA.
// Must not test pre-login limits for their own sake (dialogue unit tests do).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineClient } from './harness/line-client.js';
import { withWorldAndProxy } from './proxy-fixture.js';

const SIZE = 2 * 1024 * 1024;

/** A 2 MiB RFC 5322 message of varied printable lines (CRLF), with a unique marker header. */
function bigMessage(marker: string): Buffer {
  const head = `From: alice@example.com\r\nTo: alice@example.com\r\nSubject: pipelined ${marker}\r\nX-Marker: ${marker}\r\n\r\n`;
  const lines: string[] = [];
  let size = Buffer.byteLength(head);
  for (let i = 0; size < SIZE; i++) {
    const line = `${i.toString(36).padStart(6, '0')} ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2).slice(i % 36, (i % 36) + 60)}\r\n`;
    lines.push(line);
    size += line.length;
  }
  const out = Buffer.from(head + lines.join(''));
  // Trim to exactly SIZE, ending on CRLF.
  return Buffer.concat([out.subarray(0, SIZE - 2), Buffer.from('\r\n')]);
}

describe('commands pipelined behind a login reach the backend (real Dovecot)', function () {
  this.timeout(60_000);
  const env = withWorldAndProxy((raw) => {
    raw['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'none' },
      { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'none' },
    ];
    raw['smtp'] = { requireTlsForAuth: false };
  });

  it('IMAP: LOGIN + APPEND {2097152+} + LOGOUT in one write: stored byte-identical (FETCH back and the maildir file)', async () => {
    const { alice } = env.world.users;
    const marker = `m${Date.now()}`;
    const msg = bigMessage(marker);
    assert.equal(msg.length, SIZE);
    const c = await LineClient.connect(env.proxy.port('imap', 'none'));
    assert.match(await c.readLine(), /^\* OK/);
    c.write(Buffer.concat([Buffer.from(`a LOGIN ${alice.uid} ${alice.password}\r\nb APPEND INBOX {${SIZE}+}\r\n`), msg, Buffer.from('\r\nc LOGOUT\r\n')]));
    const replies = await c.readUntil(/^c (OK|NO|BAD)/, 30_000);
    assert.match(replies, /^a OK/m, replies);
    assert.doesNotMatch(replies, /Line too long|BYE Line/);
    const uid = /^b OK \[APPENDUID \d+ (\d+)\]/m.exec(replies)?.[1];
    assert.ok(uid, replies);
    c.close();

    const f = await LineClient.connect(env.proxy.port('imap', 'none'));
    await f.readLine();
    assert.match(await f.command('l', `LOGIN ${alice.uid} ${alice.password}`), /^l OK/m);
    assert.match(await f.command('s', 'SELECT INBOX'), /^s OK/m);
    f.send(`u UID FETCH ${uid} BODY.PEEK[]`);
    const head = await f.readLine(10_000);
    const n = Number(/\{(\d+)\}$/.exec(head)?.[1]);
    assert.equal(n, SIZE, head);
    const fetched = await f.readBytes(n, 20_000);
    assert.equal(Buffer.compare(fetched, msg), 0, 'FETCH returns the appended bytes unchanged');
    await f.readUntil(/^u OK/, 10_000);
    f.close();

    // Dovecot's maildir keeps the message with LF line ends (mail_save_crlf = no): the same bytes otherwise.
    const maildir = join(env.world.backends.a.mailRoot, alice.uid, 'Maildir');
    const files = ['new', 'cur'].flatMap((d) => readdirSync(join(maildir, d)).map((f) => join(maildir, d, f)));
    const stored = files.map((p) => readFileSync(p)).find((b) => b.includes(`X-Marker: ${marker}`));
    assert.ok(stored, 'message file in the maildir');
    assert.equal(Buffer.compare(stored, Buffer.from(msg.toString('latin1').replace(/\r\n/g, '\n'), 'latin1')), 0);
  });

  it('POP3: USER, PASS, STAT, LIST, QUIT in one write', async () => {
    const { bob } = env.world.users;
    const c = await LineClient.connect(env.proxy.port('pop3', 'none'));
    assert.match(await c.readLine(), /^\+OK/);
    c.write(`USER ${bob.uid}\r\nPASS ${bob.password}\r\nSTAT\r\nLIST\r\nQUIT\r\n`);
    assert.match(await c.readLine(), /^\+OK/);
    assert.match(await c.readLine(), /^\+OK/, 'PASS');
    assert.match(await c.readLine(), /^\+OK \d+ \d+/, 'STAT answered by the backend');
    const list = await c.readUntil(/^\.$/);
    assert.match(list, /^\+OK/);
    assert.match(await c.readLine(), /^\+OK/, 'QUIT');
    c.close();
  });

  it('SMTP submission: AUTH PLAIN, MAIL, RCPT, DATA pipelined in one write (RFC 2920); the message reaches the relay', async () => {
    const { alice } = env.world.users;
    const c = await LineClient.connect(env.proxy.port('submission', 'none'));
    assert.match(await c.readLine(), /^220 /);
    c.send('EHLO client.example');
    const ehlo = await c.readUntil(/^250 /);
    assert.match(ehlo, /PIPELINING/);
    const marker = `p${Date.now()}`;
    const before = env.world.sink.messages.length;
    const plain = Buffer.from(`\0${alice.uid}\0${alice.password}`).toString('base64');
    c.write(`AUTH PLAIN ${plain}\r\nMAIL FROM:<${alice.uid}@example.com>\r\nRCPT TO:<someone@example.org>\r\nDATA\r\n`);
    assert.match(await c.readLine(10_000), /^235 /);
    assert.match(await c.readLine(10_000), /^250 /);
    assert.match(await c.readLine(10_000), /^250 /);
    assert.match(await c.readLine(10_000), /^354 /);
    c.write(`Subject: ${marker}\r\n\r\nhello\r\n.\r\nQUIT\r\n`);
    assert.match(await c.readLine(10_000), /^250 /);
    await env.world.sink.waitFor(before + 1, 10_000);
    assert.ok(env.world.sink.messages.some((m) => m.raw.includes(marker)));
    c.close();
  });
});
