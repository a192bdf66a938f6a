// Proves the SMTP listeners' bound on slow lines (slowloris): a client trickling one byte at a time is closed with
// 421 once a line has taken longer than smtp.commandTimeoutMs, while a client pausing between whole lines (also after
// STARTTLS) and a message in DATA are unaffected. Real slapd and Dovecot behind the proxy.
// Must not test smtp-server's own inactivity timer (a silent client) nor SMTP relaying (smtp-inbound does).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LineClient } from './harness/line-client.js';
import { withWorldAndProxy } from './proxy-fixture.js';
import { sendAndQuit, smtpReply } from './smtp-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LINE_MS = 1500;

describe('SMTP slow lines (slowloris) through the proxy', function () {
  this.timeout(60_000);
  const env = withWorldAndProxy((raw) => {
    raw['log'] = { level: 'warn' };
    raw['listeners'] = [
      { protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
    ];
    raw['smtp'] = { hostname: 'mx.proxy.example.test', commandTimeoutMs: LINE_MS };
  });

  async function trickle(port: number): Promise<{ reply: string; ms: number; sent: number }> {
    const c = await LineClient.connect(port, { timeoutMs: 20_000 });
    try {
      assert.match(await smtpReply(c), /^220 /m);
      const t0 = Date.now();
      let sent = 0;
      const text = 'EHLO ' + 'a'.repeat(200);
      const writer = (async () => {
        while (!c.isClosed && sent < text.length && Date.now() - t0 < 12_000) { c.write(text[sent++]!); await sleep(150); }
      })();
      const reply = await smtpReply(c, 12_000).catch((e: Error) => `no reply: ${e.message}`);
      const ms = Date.now() - t0;
      await writer;
      return { reply, ms, sent };
    } finally { c.close(); }
  }

  it('inbound and submission: one byte every 150 ms gets 421 4.4.2 once the line is older than commandTimeoutMs', async () => {
    for (const protocol of ['smtp', 'submission']) {
      const r = await trickle(env.proxy.port(protocol, 'starttls'));
      assert.match(r.reply, /^421 4\.4\.2 /m, `${protocol}: ${r.reply} after ${r.ms} ms, ${r.sent} bytes`);
      // Well under the 12 s the client would keep trickling; smtp-server's own timer alone never fires here.
      assert.ok(r.ms >= LINE_MS - 100 && r.ms < LINE_MS + 3000, `${protocol}: closed after ${r.ms} ms`);
    }
  });

  it('pauses between whole lines, before and after STARTTLS, and a message in DATA are not cut', async () => {
    const { world } = env;
    const c = await LineClient.connect(env.proxy.port('smtp', 'starttls'), { timeoutMs: 20_000 });
    assert.match(await smtpReply(c), /^220 /m);
    const pause = () => sleep(LINE_MS * 0.7);
    await pause();
    c.send('EHLO client.example.test');
    assert.match(await smtpReply(c), /^250 /m);
    await pause();
    c.send('STARTTLS');
    assert.match(await smtpReply(c), /^220 /m);
    const t = await c.startTls(readFileSync(world.tls.caPath));
    for (let i = 0; i < 3; i++) {
      await pause();
      t.send(i === 0 ? 'EHLO client.example.test' : 'NOOP');
      assert.match(await smtpReply(t), /^250 /m);
    }
    await sendAndQuit(t, 'sender@remote.example', world.users.alice.mail, `Subject: slow but whole lines\r\n\r\n${'line\r\n'.repeat(2000)}`);
  });
});
