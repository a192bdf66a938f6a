// Owns delivering one message to one recipient over LMTP (RFC 2033), for seeding and growing test mailboxes.
// Must not know which backend or user it talks to beyond the port and recipient given.
import { LineClient } from './line-client.js';

async function reply(c: LineClient, expect: RegExp, step: string): Promise<string> {
  const text = await c.readUntil(/^\d{3} /, 10000);
  const last = text.split('\r\n').pop() ?? '';
  if (!expect.test(last)) throw new Error(`LMTP ${step} failed: ${text}`);
  return text;
}

/** RFC 5321 §4.5.2 transparency: a line starting with "." gets one more. Normalises bare LF to CRLF. */
export function dotStuff(rfc822: string | Buffer): Buffer {
  const text = Buffer.isBuffer(rfc822) ? rfc822.toString('latin1') : Buffer.from(rfc822, 'utf8').toString('latin1');
  let body = text.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
  if (!body.endsWith('\r\n')) body += '\r\n';
  return Buffer.from(body + '.\r\n', 'latin1');
}

/** Deliver `rfc822` to `rcpt` (bare uid or uid@domain) via LMTP on 127.0.0.1:port; throws on any non-2xx. */
export async function deliverLmtp(port: number, rcpt: string, rfc822: string | Buffer, from = ''): Promise<void> {
  const c = await LineClient.connect(port);
  try {
    await reply(c, /^220 /, 'greeting');
    c.send('LHLO harness.example.test');
    await reply(c, /^250 /, 'LHLO');
    c.send(`MAIL FROM:<${from}>`);
    await reply(c, /^250 /, 'MAIL FROM');
    c.send(`RCPT TO:<${rcpt}>`);
    await reply(c, /^250 /, `RCPT TO ${rcpt}`);
    c.send('DATA');
    await reply(c, /^354 /, 'DATA');
    c.write(dotStuff(rfc822));
    // LMTP answers once per accepted recipient (RFC 2033 §4.2); there is exactly one.
    await reply(c, /^250 /, `delivery to ${rcpt}`);
    c.send('QUIT');
    await reply(c, /^221 /, 'QUIT').catch(() => undefined);
  } finally {
    c.close();
  }
}

/** A small message whose headers name the backend it was put on. */
export function markerMessage(backend: string, rcpt: string, subject = `marker ${backend}`): string {
  return [
    'From: harness@example.test',
    `To: ${rcpt}`,
    `Subject: ${subject}`,
    `X-Test-Backend: ${backend}`,
    `Message-ID: <${Date.now()}.${Math.random().toString(36).slice(2)}@harness.example.test>`,
    `Date: ${new Date().toUTCString()}`,
    '',
    `This message lives on ${backend}.`,
    '',
  ].join('\r\n');
}
