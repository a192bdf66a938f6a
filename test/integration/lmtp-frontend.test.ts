// Proves the LMTP front-end listener (RFC 2033) against real Dovecot LMTP: one transaction fanned out to each recipient's backend, one reply per
// recipient after DATA in RCPT order, never a success for a recipient its backend did not accept; swaks (a real LMTP client) and raw sockets.
// Must not test inbound SMTP (smtp-inbound.test.ts).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LineClient } from './harness/line-client.js';
import type { World } from './harness/world.js';
import { withWorldAndProxy } from './proxy-fixture.js';

async function stored(world: World, b: 'a' | 'b', uid: string, marker: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const sub of ['new', 'cur']) {
    const dir = join(world.backends[b].mailRoot, uid, 'Maildir', sub);
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      const data = await readFile(join(dir, n));
      if (data.includes(marker)) out.push(data);
    }
  }
  return out;
}

const reply = (c: LineClient, timeoutMs = 10_000) => c.readUntil(/^\d{3} /m, timeoutMs);

async function lhlo(port: number): Promise<LineClient> {
  const c = await LineClient.connect(port);
  assert.match(await reply(c), /^220 .*LMTP/m);
  c.write('LHLO mta.example.test\r\n');
  assert.match(await reply(c), /^250 /m);
  return c;
}

describe('LMTP front-end (real Dovecot LMTP)', function () {
  this.timeout(90_000);
  const ctx = withWorldAndProxy((raw) => {
    (raw['listeners'] as unknown[]).push({ protocol: 'lmtp', address: '127.0.0.1', port: 0, tls: 'none' });
    raw['smtp'] = { hostname: 'proxy.example.test', maxMessageBytes: 1024 * 1024 };
  });

  it('fans one transaction out to two backends: a reply per recipient in RCPT order, the unknown one refused at RCPT', async () => {
    const { world, proxy } = ctx;
    const marker = randomBytes(6).toString('hex');
    const c = await lhlo(proxy.port('lmtp', 'none'));
    c.write('MAIL FROM:<sender@elsewhere.example>\r\n');
    assert.match(await reply(c), /^250 /m);
    for (const [rcpt, want] of [['bob@example.test', /^250 /m], ['nobody@example.test', /^550 5\.1\.1/m], ['alice@example.test', /^250 /m]] as const) {
      c.write(`RCPT TO:<${rcpt}>\r\n`);
      assert.match(await reply(c), want, rcpt);
    }
    c.write('DATA\r\n');
    assert.match(await reply(c), /^354 /m);
    c.write(`Subject: lmtp ${marker}\r\n\r\nfanned out\r\n.\r\n`);
    const first = await reply(c);
    const second = await reply(c);
    // Per recipient, in RCPT order: bob (backend-b) first, alice (backend-a) second; Dovecot names the recipient in its reply.
    assert.match(first, /^250 .*<bob@example\.test>/m);
    assert.match(second, /^250 .*<alice@example\.test>/m);
    c.write('QUIT\r\n');
    c.close();
    assert.equal((await stored(world, 'b', 'bob', marker)).length, 1);
    const a = await stored(world, 'a', 'alice', marker);
    assert.equal(a.length, 1);
    assert.match(a[0]!.toString(), /^Received: from mta\.example\.test [^\n]*\n\s+by proxy\.example\.test with LMTP/m);
  });

  it('defers recipients whose backend is dead or who have no backend (451 at RCPT), accepts the rest', async () => {
    const { proxy } = ctx;
    const c = await lhlo(proxy.port('lmtp', 'none'));
    c.write('MAIL FROM:<sender@elsewhere.example>\r\n');
    await reply(c);
    c.write('RCPT TO:<dave@example.test>\r\n');
    assert.match(await reply(c), /^451 4\.3\.0/m);
    c.write('RCPT TO:<carol@example.test>\r\n');
    assert.match(await reply(c), /^451 /m);
    c.write('RCPT TO:<erin@example.test>\r\n');
    assert.match(await reply(c), /^250 /m);
    c.write('DATA\r\n');
    await reply(c);
    c.write('Subject: partial\r\n\r\nx\r\n.\r\n');
    assert.match(await reply(c), /^250 .*<erin@example\.test>/m);
    assert.equal(await c.anyDataWithin(300), false, 'exactly one reply: one accepted recipient');
    c.close();
  });

  it('a repeated RCPT (any case) gets its own reply after DATA, as every 250 RCPT must (RFC 2033 §4.2), also when the message is too large', async () => {
    const { world, proxy } = ctx;
    const marker = randomBytes(6).toString('hex');
    const c = await lhlo(proxy.port('lmtp', 'none'));
    const envelope = async (): Promise<void> => {
      c.write('MAIL FROM:<sender@elsewhere.example>\r\n');
      assert.match(await reply(c), /^250 /m);
      for (const rcpt of ['alice@example.test', 'bob@example.test', 'ALICE@example.test']) {
        c.write(`RCPT TO:<${rcpt}>\r\n`);
        assert.match(await reply(c), /^250 /m, rcpt);
      }
      c.write('DATA\r\n');
      assert.match(await reply(c), /^354 /m);
    };
    await envelope();
    c.write(`Subject: repeated ${marker}\r\n\r\nx\r\n.\r\n`);
    assert.match(await reply(c), /^250 .*<alice@example\.test>/m);
    assert.match(await reply(c), /^250 .*<bob@example\.test>/m);
    assert.match(await reply(c), /^250 .*<alice@example\.test>/m, 'the repeated recipient gets the reply of its delivery');
    assert.equal(await c.anyDataWithin(300), false, 'three RCPTs accepted, three replies');
    await envelope();
    const line = `${'y'.repeat(998)}\r\n`;
    c.write(`Subject: big\r\n\r\n${line.repeat(Math.ceil(1.1 * 1024 * 1024 / line.length))}.\r\n`);
    for (let i = 0; i < 3; i++) assert.match(await reply(c), /^552 /m, `too-large reply ${i + 1} of 3`);
    assert.equal(await c.anyDataWithin(300), false, 'three too-large replies, no more');
    c.write('QUIT\r\n');
    c.close();
    assert.equal((await stored(world, 'a', 'alice', marker)).length, 1, 'alice got the message once');
    assert.equal((await stored(world, 'b', 'bob', marker)).length, 1);
  });

  it('swaks --protocol LMTP delivers to alice and bob through the tier', async () => {
    const { world, proxy } = ctx;
    const marker = randomBytes(6).toString('hex');
    const out = await new Promise<string>((resolve, reject) => {
      execFile('swaks', ['--server', `127.0.0.1:${proxy.port('lmtp', 'none')}`, '--protocol', 'LMTP', '--helo', 'mta.example.test', '--from', 'sender@elsewhere.example',
        '--to', 'alice@example.test,bob@example.test', '--header', `Subject: swaks ${marker}`, '--body', 'via swaks'], { timeout: 20_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stdout}\n${stderr}`)); else resolve(stdout);
      });
    });
    assert.match(out, /^<- +250 .*<alice@example\.test>/m);
    assert.match(out, /^<- +250 .*<bob@example\.test>/m);
    assert.equal((await stored(world, 'a', 'alice', marker)).length, 1);
    assert.equal((await stored(world, 'b', 'bob', marker)).length, 1);
  });

  it('a backend that dies after RCPT gets its recipients a 4xx after DATA while the other backend\'s recipient gets 250 (never a false success)', async () => {
    const { world, proxy } = ctx;
    const marker = randomBytes(6).toString('hex');
    const c = await lhlo(proxy.port('lmtp', 'none'));
    c.write('MAIL FROM:<sender@elsewhere.example>\r\n');
    await reply(c);
    c.write('RCPT TO:<alice@example.test>\r\n');
    assert.match(await reply(c), /^250 /m);
    c.write('RCPT TO:<bob@example.test>\r\n');
    assert.match(await reply(c), /^250 /m);
    await world.backends.b.stop();
    try {
      c.write('DATA\r\n');
      assert.match(await reply(c), /^354 /m);
      c.write(`Subject: dying ${marker}\r\n\r\nx\r\n.\r\n`);
      assert.match(await reply(c), /^250 .*<alice@example\.test>/m);
      assert.match(await reply(c), /^4\d\d /m);
      c.close();
      assert.equal((await stored(world, 'a', 'alice', marker)).length, 1);
    } finally {
      await world.backends.b.start();
    }
    assert.equal((await stored(world, 'b', 'bob', marker)).length, 0);
  });
});
