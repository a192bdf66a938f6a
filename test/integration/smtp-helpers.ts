// Owns small raw-SMTP conveniences for integration tests over LineClient: read a (multi-line) reply, one whole transaction.
// Must not assert protocol behaviour beyond each step being accepted; tests do the rest.
import assert from 'node:assert/strict';
import type { LineClient } from './harness/line-client.js';

/** One SMTP reply up to its last line (`NNN ` ends a multi-line reply). */
export const smtpReply = (c: LineClient, timeoutMs = 10_000): Promise<string> => c.readUntil(/^\d{3} /m, timeoutMs);

/** MAIL, RCPT, DATA and the message (dot-terminated here), each accepted; then QUIT and close. */
export async function sendAndQuit(c: LineClient, from: string, to: string, body: string): Promise<void> {
  c.send(`MAIL FROM:<${from}>`);
  assert.match(await smtpReply(c), /^250 /m);
  c.send(`RCPT TO:<${to}>`);
  assert.match(await smtpReply(c), /^250 /m);
  c.send('DATA');
  assert.match(await smtpReply(c), /^354 /m);
  c.write(`${body}\r\n.\r\n`);
  assert.match(await smtpReply(c), /^250 /m);
  c.send('QUIT');
  await smtpReply(c).catch(() => '');
  c.close();
}
