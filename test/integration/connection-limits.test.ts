// Proves listener connection limits: per client address and in total, answered with the protocol's temporary error, freed on close.
// Must not test login behaviour beyond one login proving a freed slot works.
import assert from 'node:assert/strict';
import { LineClient } from './harness/line-client.js';
import { withWorldAndProxy } from './proxy-fixture.js';

describe('listener connection limits', function () {
  this.timeout(30_000);
  const env = withWorldAndProxy((raw) => {
    raw['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none', maxConnectionsPerIp: 2, maxConnections: 3 },
      { protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'none', maxConnectionsPerIp: 1 },
    ];
  });

  it('refuses a third connection from one address with * BYE [UNAVAILABLE], while another address still gets in', async () => {
    const port = env.proxy.port('imap', 'none');
    const a1 = await LineClient.connect(port, { localAddress: '127.0.0.61' });
    const a2 = await LineClient.connect(port, { localAddress: '127.0.0.61' });
    assert.match(await a1.readLine(), /^\* OK/);
    assert.match(await a2.readLine(), /^\* OK/);
    const a3 = await LineClient.connect(port, { localAddress: '127.0.0.61' });
    assert.equal(await a3.readLine(), '* BYE [UNAVAILABLE] Too many connections, please try again later');
    const b1 = await LineClient.connect(port, { localAddress: '127.0.0.62' });
    assert.match(await b1.readLine(), /^\* OK/);
    // total limit (3) reached now
    const c1 = await LineClient.connect(port, { localAddress: '127.0.0.63' });
    assert.match(await c1.readLine(), /^\* BYE \[UNAVAILABLE\] Too many connections/);
    // closing one frees a slot for that address, and the new connection logs in normally
    a1.close();
    await new Promise((r) => setTimeout(r, 100));
    const a4 = await LineClient.connect(port, { localAddress: '127.0.0.61' });
    assert.match(await a4.readLine(), /^\* OK/);
    assert.match(await a4.command('l', `LOGIN alice ${env.world.users.alice.password}`), /^l OK/m);
    for (const c of [a2, a3, b1, c1, a4]) c.close();
    const m = await (await import('../../src/metrics.js')).registry.getSingleMetricAsString('mailproxy_connections_refused_total');
    assert.match(m, /protocol="imap",reason="max_connections_per_ip"\} [1-9]/);
    assert.match(m, /protocol="imap",reason="max_connections"\} [1-9]/);
  });

  it('answers POP3 with -ERR [SYS/TEMP] when over the per-address limit', async () => {
    const port = env.proxy.port('pop3', 'none');
    const p1 = await LineClient.connect(port, { localAddress: '127.0.0.64' });
    assert.match(await p1.readLine(), /^\+OK/);
    const p2 = await LineClient.connect(port, { localAddress: '127.0.0.64' });
    assert.equal(await p2.readLine(), '-ERR [SYS/TEMP] Too many connections, please try again later');
    p1.close(); p2.close();
  });
});
