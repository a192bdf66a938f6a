// Proves the POP3 post-login relay: a ~5 MiB RETR is byte-identical to a direct RETR from the backend; DELE/QUIT reach the backend.
// Must not test login forms or failure answers.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { LineClient } from './harness/line-client.js';
import { withWorldAndProxy } from './proxy-fixture.js';
import { cmd, greet, list, readMultilineBody, userPass } from './pop3-helpers.js';

/** Lines of random base64, some starting with "." so dot-stuffing is exercised end to end. */
function bigMessage(bytes: number, subject: string): string {
  const line = (i: number) => `${i % 97 === 0 ? '.' : ''}${i.toString().padStart(8, '0')} ${randomBytes(36).toString('base64')}\r\n`;
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) { const l = line(i); parts.push(l); size += l.length; }
  return `From: big@example.test\r\nTo: bob@example.test\r\nSubject: ${subject}\r\nX-Test-Backend: backend-b\r\n\r\n${parts.join('')}`;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('POP3 relay after login (real Dovecot)', function () {
  this.timeout(60_000);
  let port: number;
  const env = withWorldAndProxy({ onReady: (_world, proxy) => { port = proxy.port('pop3', 'starttls'); } });

  async function login(viaProxy: boolean): Promise<LineClient> {
    const { c, greeting } = await greet(viaProxy ? port : env.world.backends.b.ports.pop3);
    assert.match(greeting, /^\+OK/);
    assert.match(await userPass(c, 'bob', env.world.users.bob.password), /^\+OK/);
    return c;
  }

  async function retr(c: LineClient, n: number): Promise<{ status: string; body: Buffer }> {
    const status = await cmd(c, `RETR ${n}`, 10_000);
    assert.match(status, /^\+OK/, status);
    return { status, body: await readMultilineBody(c, 30_000) };
  }

  it('relays a ~5 MiB RETR byte-identical to a direct RETR from backend-b', async () => {
    const subject = `five mebibytes ${Date.now()}`;
    await env.world.backends.b.deliver(env.world.users.bob.mail, bigMessage(5 * 1024 * 1024, subject));

    const direct = await login(false);
    const messages = await list(direct);
    const biggest = messages.reduce((x, y) => (y.size > x.size ? y : x));
    assert.ok(biggest.size >= 5 * 1024 * 1024, `largest message ${biggest.size} bytes`);
    const a = await retr(direct, biggest.n);
    assert.match(await cmd(direct, 'QUIT'), /^\+OK/);
    direct.close();

    const viaProxy = await login(true);
    const b = await retr(viaProxy, biggest.n);
    assert.equal(b.status, a.status);
    assert.ok(b.body.length >= 5 * 1024 * 1024, `body ${b.body.length} bytes`);
    assert.ok(b.body.includes(`Subject: ${subject}\r\n`));
    assert.ok(b.body.includes('\r\n..00000097 '), 'dot-stuffed line came through stuffed');
    assert.equal(b.body.length, a.body.length);
    assert.equal(sha256(b.body), sha256(a.body));
    // The session is still in step after the big response.
    assert.match(await cmd(viaProxy, 'NOOP'), /^\+OK/);
    viaProxy.close();
  });

  it('passes DELE and QUIT (UPDATE state) through to the backend', async () => {
    await env.world.backends.b.deliver(env.world.users.bob.mail, 'From: x@example.test\r\nSubject: delete me\r\n\r\nbye\r\n');
    const c = await login(true);
    const before = await list(c);
    const last = before.at(-1)!;
    assert.match(await cmd(c, `DELE ${last.n}`), /^\+OK/);
    assert.match(await cmd(c, 'QUIT'), /^\+OK/);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.isClosed, 'the backend closed after QUIT and the proxy passed the close on');
    c.close();

    const again = await login(false);
    const after = await list(again);
    assert.equal(after.length, before.length - 1);
    again.close();
  });
});
