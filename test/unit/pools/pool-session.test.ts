// Proves a real IMAP Session routed through a pool on in-memory sockets and a fake clock: the member hashing names is dialled,
// the session carries its pool, and a drain closes it with the pool goodbye. Must not open sockets.
import assert from 'node:assert/strict';
import { rankMembers } from '../../../src/directory/pool-route.js';
import { ProtocolService } from '../../../src/proxy/session.js';
import { imapModule } from '../../../src/proxy/imap/index.js';
import { FakeClock } from '../health/fake-clock.js';
import { IMAP_BACKEND, accepted, fakeDialer, handlerDeps, recordingGate, socketPair, testConfig } from '../proxy/fakes.js';

const PORT: Record<string, number> = { m1: 2001, m2: 2002, m3: 2003 };

describe('pool routing in a real IMAP session (in-memory)', () => {
  it('dials the member hashing names, bypasses the gate, and a drain closes the session with the pool goodbye', async () => {
    // The fake directory gives alice the host value b1: here b1 names a pool.
    const config = testConfig({
      backends: Object.fromEntries(Object.entries(PORT).map(([m, port]) => [m, { host: `${m}.test`, imap: { port } }])),
      routing: {},
      pools: { b1: { members: ['m1', 'm2', 'm3'], drainWindowMs: 1000 } },
    });
    const member = rankMembers('alice', ['m1', 'm2', 'm3'].map((name) => ({ name, weight: 1 })))[0]!;
    const clock = new FakeClock();
    const gate = recordingGate();
    const { dial } = fakeDialer({ [PORT[member]!]: IMAP_BACKEND }); // the other members refuse: a wrong choice fails the login
    const deps = handlerDeps(config, dial, clock, gate);
    const service = new ProtocolService({ ...deps, module: imapModule });
    const [client, server] = socketPair();
    client.collect();
    service.handle(server.asSocket(), accepted('imap'));
    await clock.advance(0);
    client.write('a1 LOGIN alice secret\r\n');
    await clock.advance(0);
    assert.match(client.text, /a1 OK \[CAPABILITY IMAP4rev1 IDLE\] Logged in\r\n/);
    const info = deps.sessions.list({ user: 'alice' })[0]!.info;
    assert.equal(info.backend, member);
    assert.equal(info.pool, 'b1');
    deps.pools.observe(member, 'maintenance', clock.now());
    await clock.advance(1000);
    deps.pools.sweep();
    await clock.advance(0);
    assert.match(client.text, /\* BYE \[UNAVAILABLE\] Your mailbox is moving to another server, please reconnect\r\n$/);
    assert.equal(deps.sessions.size, 0);
  });
});
