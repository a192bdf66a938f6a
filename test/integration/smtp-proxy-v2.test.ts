// Proves submission towards a backend listener that expects PROXY v2 (`forwardClientAddress: proxy-v2`): the client address reaches Dovecot.
// Must not test XCLIENT forwarding or SMTP dialogue details (smtp-submission tests do).
import assert from 'node:assert/strict';
import { LineClient } from './harness/line-client.js';
import { withWorldAndProxy } from './proxy-fixture.js';

describe('submission to a PROXY-v2 backend listener (real Dovecot)', function () {
  this.timeout(30_000);
  const env = withWorldAndProxy((raw, world) => {
    (raw['listeners'] as unknown[]).push({ protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' });
    raw['smtp'] = { requireTlsForAuth: false, authFailureDelayMs: 0, authFailureMaxDelayMs: 0 };
    const a = (raw['backends'] as Record<string, Record<string, unknown>>)['backend-a']!;
    a['submission'] = { port: world.backends.a.ports.submissionHaproxy, tls: 'none' };
    a['forwardClientAddress'] = 'proxy-v2';
  });

  it('relays a message; Dovecot logs the client address from the PROXY v2 header', async () => {
    const c = await LineClient.connect(env.proxy.port('submission', 'starttls'), { localAddress: '127.0.0.44' });
    assert.match(await c.readLine(), /^220 /);
    c.send('EHLO client.example.org');
    await c.readUntil(/^250 /);
    c.send(`AUTH PLAIN ${Buffer.from(`\0alice\0${env.world.users.alice.password}`).toString('base64')}`);
    assert.match(await c.readLine(), /^235 /);
    const before = env.world.sink.messages.length;
    c.send('MAIL FROM:<alice@example.test>');
    assert.match(await c.readLine(), /^250 /);
    c.send('RCPT TO:<friend@example.org>');
    assert.match(await c.readLine(), /^250 /);
    c.send('DATA');
    assert.match(await c.readLine(), /^354 /);
    c.write('Subject: via proxy v2\r\n\r\nhello\r\n.\r\n');
    assert.match(await c.readLine(10_000), /^250 /);
    c.send('QUIT');
    c.close();
    await env.world.sink.waitFor(before + 1, 5000);
    assert.match(env.world.sink.messages.at(-1)!.raw.toString(), /Subject: via proxy v2/);
    let log = '';
    for (let i = 0; i < 40 && !/submission-login: Info: Login: user=<alice>.*rip=127\.0\.0\.44/.test(log); i++) { await new Promise((r) => setTimeout(r, 50)); log = await env.world.backends.a.readLog(); }
    assert.match(log, /submission-login: Info: Login: user=<alice>.*rip=127\.0\.0\.44/);
  });
});
