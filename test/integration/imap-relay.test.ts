// Proves the post-login splice: IDLE updates pass through, a 10 MiB FETCH is byte-identical to a direct one, APPEND literals,
// replies to a half-closed client, session summary.
// Must not test login forms or failure answers.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { LineClient } from './harness/line-client.js';
import { withWorldAndProxy } from './proxy-fixture.js';
import { greet } from './imap-helpers.js';

async function fetchBody(c: LineClient, seq: number): Promise<Buffer> {
  c.send(`f FETCH ${seq} BODY.PEEK[]`);
  const head = await c.readUntil(/\{\d+\}$/, 10_000);
  const size = Number(/\{(\d+)\}$/.exec(head)![1]);
  const body = await c.readBytes(size, 30_000);
  const tail = await c.readUntil(/^f (OK|NO|BAD)/, 10_000);
  assert.match(tail, /^f OK/m);
  return body;
}

function bigMessage(bytes: number): string {
  const line = (i: number) => `${i.toString().padStart(8, '0')} ${randomBytes(36).toString('base64')}\r\n`;
  let body = '';
  for (let i = 0; body.length < bytes; i++) body += line(i);
  return `From: big@example.test\r\nTo: alice@example.test\r\nSubject: ten mebibytes\r\nX-Test-Backend: backend-a\r\n\r\n${body}`;
}

describe('IMAP relay after login (real Dovecot)', function () {
  this.timeout(60_000);
  let port: number;
  const env = withWorldAndProxy({ onReady: (_world, proxy) => { port = proxy.port('imap', 'starttls'); } });

  async function login(user: 'alice' | 'bob', viaProxy = true): Promise<LineClient> {
    const { c } = viaProxy ? await greet(port) : await greet(env.world.backends[user === 'alice' ? 'a' : 'b'].ports.imap);
    assert.match(await c.command('l', `LOGIN ${user} ${env.world.users[user].password}`), /^l OK/m);
    return c;
  }

  it('passes IDLE through: a message delivered by LMTP appears as * N EXISTS', async () => {
    const c = await login('bob');
    const sel = await c.command('s', 'SELECT INBOX');
    const before = Number(/\* (\d+) EXISTS/.exec(sel)![1]);
    c.send('i IDLE');
    assert.match(await c.readLine(), /^\+ idling/i);
    await env.world.backends.b.deliver(env.world.users.bob.mail, 'From: x@example.test\r\nSubject: idle test\r\n\r\nhello\r\n');
    const line = await c.readUntil(/^\* \d+ EXISTS/, 10_000);
    assert.match(line, new RegExp(`^\\* ${before + 1} EXISTS`, 'm'));
    c.send('DONE');
    assert.match(await c.readUntil(/^i (OK|NO|BAD)/), /^i OK/m);
    c.close();
  });

  it('relays a 10 MiB FETCH byte-identical to a direct fetch from the backend', async () => {
    await env.world.backends.a.deliver(env.world.users.alice.mail, bigMessage(10 * 1024 * 1024));
    const direct = await login('alice', false);
    const viaProxy = await login('alice');
    await direct.command('s', 'SELECT INBOX');
    await viaProxy.command('s', 'SELECT INBOX');
    const sizes = await direct.command('z', 'FETCH 1:* (RFC822.SIZE)');
    const [, n = 0] = [...sizes.matchAll(/^\* (\d+) FETCH \(RFC822\.SIZE (\d+)\)/gm)].map((m) => [Number(m[2]), Number(m[1])]).sort((x, y) => y[0]! - x[0]!)[0]!;
    const a = await fetchBody(direct, n);
    const b = await fetchBody(viaProxy, n);
    assert.ok(a.length >= 10 * 1024 * 1024, `size ${a.length}`);
    assert.equal(createHash('sha256').update(b).digest('hex'), createHash('sha256').update(a).digest('hex'));
    direct.close(); viaProxy.close();
  });

  it('passes APPEND with a synchronising literal through untouched', async () => {
    const c = await login('alice');
    const msg = `From: a@example.test\r\nSubject: appended ${Date.now()}\r\n\r\nbody\r\n`;
    c.send(`ap APPEND INBOX {${Buffer.byteLength(msg)}}`);
    assert.match(await c.readLine(), /^\+/);
    c.write(`${msg}\r\n`);
    assert.match(await c.readUntil(/^ap (OK|NO|BAD)/), /^ap OK/m);
    c.close();
  });

  it('delivers the replies to a client that half-closes after piping its commands (as a direct connection does)', async () => {
    const c = await login('alice');
    c.write('s SELECT INBOX\r\nz LOGOUT\r\n');
    c.socket.end();
    const replies = await c.readUntil(/^z (OK|NO|BAD)/, 10_000);
    assert.match(replies, /^s OK/m);
    assert.match(replies, /^\* BYE/m);
    assert.match(replies, /^z OK/m);
    c.close();
  });

  it('writes one summary record per session with user, backend, bytes and who closed', async () => {
    const c = await login('bob');
    await c.command('z', 'LOGOUT');
    await new Promise((r) => setTimeout(r, 300));
    const summaries = env.proxy.logs.filter((l) => l['summary'] === true && l['user'] === 'bob' && l['result'] === 'ok');
    assert.ok(summaries.length > 0);
    const s = summaries.at(-1)!;
    assert.equal(s['backend'], 'backend-b');
    assert.ok((s['bytesUp'] as number) > 0 && (s['bytesDown'] as number) > 0);
    assert.ok(['client', 'backend'].includes(s['closedBy'] as string));
  });
});
