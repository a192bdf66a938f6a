// Proves client TLS with openssl s_client on a child mailproxy before Dovecot: SNI on every listener, ALPN refusal, SIGHUP rotation, expiry gauge.
// Must not test file checks beyond what a reload refuses (tls-check-config.test.ts does the CLI).
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { requireBinaries } from './harness/binaries.js';
import { generateNamedCert } from './harness/tls-cert.js';
import { sClient, type SClientOptions } from './harness/s-client.js';
import { worldRawConfig, type RawConfig } from './proxy-fixture.js';
import { adminGet, startChildProxy, type ChildProxy } from './child-proxy.js';

type Pair = { certPath: string; keyPath: string };

describe('TLS: SNI certificates, ALPN (ALPACA), SIGHUP rotation (openssl s_client, child mailproxy, Dovecot)', function () {
  this.timeout(90_000);
  const openssl = requireBinaries().get('openssl')!;
  let world: World;
  let proxy: ChildProxy;
  let mail: Pair; let wild: Pair; let pop: Pair; let rotated: Pair; let other: Pair;

  const rawConfig = (w: World, sniMail: Pair): RawConfig => worldRawConfig(w, (c) => {
    c['log'] = { level: 'info' };
    c['tls'] = {
      certFile: w.tls.certPath, keyFile: w.tls.keyPath, name: 'default',
      sni: [
        { names: ['mail.example.com'], certFile: sniMail.certPath, keyFile: sniMail.keyPath, name: 'mail' },
        { names: ['*.example.net'], certFile: wild.certPath, keyFile: wild.keyPath },
        { names: ['pop.example.org', 'pop3.example.org'], certFile: pop.certPath, keyFile: pop.keyPath, name: 'pop' },
      ],
    };
    c['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit' },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'implicit' },
      { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'implicit' },
    ];
    c['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
  });

  before(async () => {
    world = await startWorld();
    [mail, wild, pop, rotated, other] = await Promise.all([
      generateNamedCert(openssl, world.dir, 'mail', 'mail.example.com'),
      generateNamedCert(openssl, world.dir, 'wild', 'wild.example.net', { names: ['*.example.net'] }),
      generateNamedCert(openssl, world.dir, 'pop', 'pop.example.org', { names: ['pop.example.org', 'pop3.example.org'] }),
      generateNamedCert(openssl, world.dir, 'rotated', 'rotated.example.com', { names: ['mail.example.com'] }),
      generateNamedCert(openssl, world.dir, 'other', 'other.example.com'),
    ]);
    // The SNI entry points at live.* so a SIGHUP can rotate the files in place, as an ACME client would.
    const live = { certPath: join(world.dir, 'live.crt'), keyPath: join(world.dir, 'live.key') };
    copyFileSync(mail.certPath, live.certPath); copyFileSync(mail.keyPath, live.keyPath);
    mail = live;
    proxy = await startChildProxy(world, rawConfig(world, mail), { name: 'tls-sni' });
  });
  after(async () => {
    await proxy?.stop();
    await world?.stop();
  });

  const cn = async (port: number, opts: SClientOptions) => {
    const r = await sClient(openssl, port, opts);
    assert.ok(r.subjectCN, `handshake failed: ${r.stdout}${r.stderr}`);
    return r.subjectCN;
  };

  it('chooses the certificate by SNI on every TLS listener: two exact names, a wildcard, the default', async () => {
    const ports: Array<{ port: number; starttls?: 'imap' | 'pop3' | 'smtp' }> = [
      { port: proxy.port('imap', 'implicit') }, { port: proxy.port('imap', 'starttls'), starttls: 'imap' },
      { port: proxy.port('pop3', 'implicit') }, { port: proxy.port('pop3', 'starttls'), starttls: 'pop3' },
      { port: proxy.port('submission', 'implicit') }, { port: proxy.port('submission', 'starttls'), starttls: 'smtp' },
    ];
    for (const { port, starttls } of ports) {
      const s = starttls ? { starttls } : {};
      // A wildcard covers one label only; unknown names and no SNI get the default.
      const expected: Array<[string | undefined, string]> = [
        ['mail.example.com', 'mail.example.com'], ['POP3.Example.org', 'pop.example.org'], ['imap.example.net', 'wild.example.net'],
        ['a.b.example.net', 'localhost'], ['unknown.example.com', 'localhost'], [undefined, 'localhost'],
      ];
      const seen = await Promise.all(expected.map(([name]) => cn(port, name === undefined ? s : { ...s, servername: name })));
      assert.deepEqual(seen, expected.map(([, want]) => want), `port ${port} ${starttls ?? 'implicit'}`);
    }
  });

  it('logs in to the real Dovecot through an SNI-selected certificate (implicit IMAP and POP3)', async () => {
    const { alice, bob } = world.users;
    const imap = await sClient(openssl, proxy.port('imap', 'implicit'), {
      servername: 'mail.example.com',
      input: `a LOGIN ${alice.uid} ${alice.password}\r\nb SELECT INBOX\r\nc FETCH 1 BODY.PEEK[HEADER.FIELDS (X-Test-Backend)]\r\nd LOGOUT\r\n`,
    });
    assert.match(imap.stdout, /^a OK/m, imap.stdout + imap.stderr);
    assert.match(imap.stdout, /X-Test-Backend: backend-a/);
    assert.match(imap.stdout, /^d OK/m);
    const pop3 = await sClient(openssl, proxy.port('pop3', 'implicit'), {
      servername: 'x.example.net', alpn: ['pop3'],
      input: `USER ${bob.uid}\r\nPASS ${bob.password}\r\nSTAT\r\nQUIT\r\n`,
    });
    assert.match(pop3.stdout, /^\+OK \d+ \d+/m, pop3.stdout + pop3.stderr);
  });

  it('ALPN: an offer without the listener protocol is refused in the handshake; its own protocol or no ALPN is accepted', async () => {
    const cases: Array<{ port: number; own: string; starttls?: 'imap' | 'pop3' | 'smtp' }> = [
      { port: proxy.port('imap', 'implicit'), own: 'imap' },
      { port: proxy.port('pop3', 'implicit'), own: 'pop3' },
      { port: proxy.port('submission', 'implicit'), own: 'smtp' },
      { port: proxy.port('imap', 'starttls'), own: 'imap', starttls: 'imap' },
      { port: proxy.port('pop3', 'starttls'), own: 'pop3', starttls: 'pop3' },
      // smtp-server's own STARTTLS (frontend.ts adds ALPNCallback to the options it copies to the TLS socket).
      { port: proxy.port('submission', 'starttls'), own: 'smtp', starttls: 'smtp' },
    ];
    for (const { port, own, starttls } of cases) {
      const s = starttls ? { starttls } : {};
      const refused = await sClient(openssl, port, { ...s, servername: 'mail.example.com', alpn: ['h2', 'http/1.1'] });
      assert.equal(refused.subjectCN, undefined, `${own} ${starttls ?? 'implicit'}: ${refused.stdout}`);
      assert.equal(refused.noApplicationProtocol, true, refused.stderr);
      const foreign = await sClient(openssl, port, { ...s, alpn: [own === 'imap' ? 'pop3' : 'imap'] });
      assert.equal(foreign.noApplicationProtocol, true, `${own}: another mail protocol is refused too`);
      const accepted = await sClient(openssl, port, { ...s, alpn: ['http/1.1', own] });
      assert.equal(accepted.alpn, own, accepted.stdout + accepted.stderr);
      const none = await sClient(openssl, port, { ...s });
      assert.equal(none.alpn, 'none');
    }
    assert.ok(proxy.logs.some((l) => l.msg === 'TLS handshake refused: ALPN offer without this protocol' && JSON.stringify(l['alpnOffered']) === '["h2","http/1.1"]'));
  });

  it('exports mailproxy_tls_certificate_expiry_seconds by config name or CN', async () => {
    const { body } = await adminGet(proxy.adminPort!, '/metrics');
    const value = (name: string) => Number(new RegExp(`^mailproxy_tls_certificate_expiry_seconds\\{name="${name.replace(/\./g, '\\.')}"\\} (\\S+)$`, 'm').exec(body)?.[1]);
    const days = (s: number) => s / 86_400;
    assert.ok(days(value('mail')) > 29 && days(value('mail')) <= 30, body);
    assert.ok(days(value('pop')) > 29);
    assert.ok(days(value('wild.example.net')) > 29, 'unnamed entry: labelled by CN');
    assert.ok(days(value('default')) > 6 && days(value('default')) <= 7, 'the world certificate is valid 7 days');
  });

  it('SIGHUP rotates an SNI certificate in place; a key that does not match is refused naming the config key', async () => {
    const port = proxy.port('imap', 'implicit');
    copyFileSync(rotated.certPath, mail.certPath); copyFileSync(rotated.keyPath, mail.keyPath);
    let from = proxy.logs.length;
    proxy.signal('SIGHUP');
    await proxy.waitForLog((l) => l.msg === 'configuration reloaded', 10_000, from);
    assert.equal(await cn(port, { servername: 'mail.example.com' }), 'rotated.example.com');
    assert.equal(await cn(proxy.port('submission', 'starttls'), { servername: 'mail.example.com', starttls: 'smtp' }), 'rotated.example.com');

    copyFileSync(other.keyPath, mail.keyPath);
    from = proxy.logs.length;
    proxy.signal('SIGHUP');
    const refused = await proxy.waitForLog((l) => l.msg === 'new configuration refused; old configuration stays', 10_000, from);
    assert.match(JSON.stringify(refused['problems']), /tls\.sni\[0\]\.keyFile: key does not match the certificate/);
    assert.equal(await cn(port, { servername: 'mail.example.com' }), 'rotated.example.com');
  });
});
