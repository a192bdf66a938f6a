// Owns small raw-IMAP conveniences for integration tests (connect, greet, login, fetch a header) over LineClient.
// Must not assert protocol behaviour beyond what each helper names; tests do the asserting.
import assert from 'node:assert/strict';
import { LineClient } from './harness/line-client.js';

export async function greet(port: number, opts: { tls?: boolean; ca?: string | Buffer; localAddress?: string } = {}): Promise<{ c: LineClient; greeting: string }> {
  const c = await LineClient.connect(port, opts);
  const greeting = await c.readLine();
  return { c, greeting };
}

/** LOGIN with both arguments as synchronising literals (any byte sequence works). */
export async function loginLiteral(c: LineClient, tag: string, user: string, password: string): Promise<string> {
  const u = Buffer.from(user, 'utf8');
  const p = Buffer.from(password, 'utf8');
  c.write(`${tag} LOGIN {${u.length}}\r\n`);
  assert.match(await c.readLine(), /^\+/);
  c.write(Buffer.concat([u, Buffer.from(` {${p.length}}\r\n`)]));
  assert.match(await c.readLine(), /^\+/);
  c.write(Buffer.concat([p, Buffer.from('\r\n')]));
  return c.readUntil(new RegExp(`^${tag} (OK|NO|BAD)`));
}

/** Header field `name` of message 1 in INBOX, read through an already logged-in connection. */
export async function firstMessageHeader(c: LineClient, name: string): Promise<string> {
  const sel = await c.command('s1', 'SELECT INBOX');
  assert.match(sel, /^s1 OK/m, sel);
  const f = await c.command('f1', `FETCH 1 (BODY.PEEK[HEADER.FIELDS (${name})])`);
  assert.match(f, /^f1 OK/m, f);
  return f;
}

export function b64(s: string): string { return Buffer.from(s, 'utf8').toString('base64'); }
