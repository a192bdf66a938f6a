// Proves the growing failed-login delay end to end: doubling per failure from one address, shared by IMAP and POP3, other
// addresses untouched, reset by a successful login. Must not test the answer texts (imap/pop3-failures tests do).
import assert from 'node:assert/strict';
import { withWorldAndProxy } from './proxy-fixture.js';
import { LineClient } from './harness/line-client.js';

describe('failed-login penalty per client address (real slapd + Dovecot)', function () {
  this.timeout(30_000);
  const env = withWorldAndProxy((raw) => {
    raw['imap'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 200, authFailureMaxDelayMs: 800 } };
    raw['pop3'] = { requireTlsForAuth: false, limits: { authFailureDelayMs: 200, authFailureMaxDelayMs: 800 } };
    raw['smtp'] = { requireTlsForAuth: false, authFailureDelayMs: 200, authFailureMaxDelayMs: 800 };
    (raw['listeners'] as unknown[]).push({ protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' });
  });

  async function imapLogin(from: string, password: string): Promise<{ reply: string; ms: number }> {
    const c = await LineClient.connect(env.proxy.port('imap', 'starttls'), { localAddress: from });
    await c.readLine();
    const t0 = Date.now();
    const reply = await c.command('a', `LOGIN alice "${password}"`);
    const ms = Date.now() - t0;
    c.close();
    return { reply, ms };
  }

  async function pop3Login(from: string, password: string): Promise<number> {
    const c = await LineClient.connect(env.proxy.port('pop3', 'starttls'), { localAddress: from });
    await c.readLine();
    c.send('USER alice'); await c.readLine();
    const t0 = Date.now();
    c.send(`PASS ${password}`);
    assert.match(await c.readLine(), /^-ERR \[AUTH\]/);
    c.close();
    return Date.now() - t0;
  }

  it('doubles the delay per failure from one address up to the cap, across IMAP and POP3', async () => {
    const from = '127.0.0.81';
    const d1 = (await imapLogin(from, 'wrong')).ms;
    const d2 = (await imapLogin(from, 'wrong')).ms;
    const d3 = await pop3Login(from, 'wrong');
    const d4 = (await imapLogin(from, 'wrong')).ms;
    assert.ok(d1 >= 190 && d1 < 390, `1st ${d1}`);
    assert.ok(d2 >= 390 && d2 < 790, `2nd ${d2}`);
    assert.ok(d3 >= 790, `3rd (POP3, same address) ${d3}`);
    assert.ok(d4 >= 790 && d4 < 1500, `4th capped at 800 (uncapped would be 1600): ${d4}`);
  });

  it('counts submission AUTH failures against the same address (switching protocol gains nothing)', async () => {
    const from = '127.0.0.84';
    await imapLogin(from, 'wrong');
    await imapLogin(from, 'wrong');
    const c = await LineClient.connect(env.proxy.port('submission', 'starttls'), { localAddress: from });
    assert.match(await c.readLine(), /^220 /);
    c.send('EHLO penalty.example'); await c.readUntil(/^250 /);
    const t0 = Date.now();
    c.send(`AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`);
    assert.match(await c.readLine(3000), /^535 /);
    const ms = Date.now() - t0;
    c.close();
    assert.ok(ms >= 790, `3rd failure from this address, over SMTP: ${ms}`);
  });

  it('leaves other addresses at the base delay', async () => {
    const { ms } = await imapLogin('127.0.0.82', 'wrong');
    assert.ok(ms >= 190 && ms < 390, `${ms}`);
  });

  it('is cleared by a successful login from that address', async () => {
    const from = '127.0.0.83';
    await imapLogin(from, 'wrong');
    await imapLogin(from, 'wrong');
    assert.match((await imapLogin(from, env.world.users.alice.password)).reply, /^a OK/m);
    const { ms } = await imapLogin(from, 'wrong');
    assert.ok(ms >= 190 && ms < 390, `after success ${ms}`);
  });
});
