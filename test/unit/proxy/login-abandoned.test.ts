// Proves a login whose client left is abandoned: no backend login on its behalf after the directory lookup or the
// connect, counted as client_gone (not backend_unavailable), nothing reported to health. Must not open sockets.
import assert from 'node:assert/strict';
import { ProtocolService } from '../../../src/proxy/session.js';
import { imapModule } from '../../../src/proxy/imap/index.js';
import { registry } from '../../../src/metrics.js';
import type { Directory } from '../../../src/directory/directory.js';
import type { Dial } from '../../../src/proxy/backend-connect.js';
import { FakeClock } from '../health/fake-clock.js';
import { IMAP_BACKEND, PORTS, accepted, directory, fakeDialer, handlerDeps, recordingGate, socketPair, testConfig } from './fakes.js';

async function logins(result: string): Promise<number> {
  const m = await registry.getSingleMetric('mailproxy_logins_total')!.get();
  return m.values.find((v) => v.labels['protocol'] === 'imap' && v.labels['result'] === result)?.value ?? 0;
}

function setup(over: { directory?: Directory; dial?: (d: Dial) => Dial } = {}) {
  const clock = new FakeClock();
  const gate = recordingGate();
  const { dial, backends: opened } = fakeDialer({ [PORTS.imap]: IMAP_BACKEND });
  let dials = 0;
  const counting: Dial = (o) => { dials++; return (over.dial ?? ((d) => d))(dial)(o); };
  const deps = handlerDeps(testConfig(), counting, clock, gate);
  const service = new ProtocolService({ ...deps, ...(over.directory ? { directory: () => over.directory! } : {}), module: imapModule });
  const [client, server] = socketPair();
  client.collect();
  service.handle(server.asSocket(), accepted('imap'));
  return { clock, gate, deps, client, server, opened, get dials() { return dials; } };
}

describe('a login whose client left', () => {
  it('left during the directory lookup: no backend is dialled, counted client_gone, health hears nothing', async () => {
    let answer!: () => void;
    const slow = { ...directory, authenticate: (c: Parameters<Directory['authenticate']>[0]) => new Promise((r) => { answer = () => r(directory.authenticate(c)); }) } as unknown as Directory;
    const s = setup({ directory: slow });
    const [gone0, unavailable0] = [await logins('client_gone'), await logins('backend_unavailable')];
    await s.clock.advance(0);
    s.client.write('a1 LOGIN alice secret\r\n');
    await s.clock.advance(0);
    s.server.destroy();
    await s.clock.advance(0);
    answer();
    await s.clock.advance(10);
    assert.equal(s.dials, 0, 'no backend connection for a client that is gone');
    assert.deepEqual(s.gate.reports, []);
    assert.equal(await logins('client_gone'), gone0 + 1);
    assert.equal(await logins('backend_unavailable'), unavailable0);
    assert.equal(s.deps.sessions.size, 0);
  });

  it('left while the backend connection was being set up: that connection is closed before any login is sent', async () => {
    let connect!: () => void;
    // The connect completes only when the test says so (after the client left).
    const held = (d: Dial): Dial => (o) => { const sock = d(o); const emit = sock.emit.bind(sock); sock.emit = ((ev: string, ...a: unknown[]) => ev === 'connect' ? (connect = () => { emit('connect'); }, true) : emit(ev, ...a)) as typeof sock.emit; return sock; };
    const s = setup({ dial: held });
    const unavailable0 = await logins('backend_unavailable');
    await s.clock.advance(0);
    s.client.write('a1 LOGIN alice secret\r\n');
    await s.clock.advance(0);
    assert.equal(s.dials, 1);
    s.server.destroy();
    await s.clock.advance(0);
    connect();
    await s.clock.advance(10);
    const backend = s.opened[0]!;
    assert.doesNotMatch(backend.text, /LOGIN/, 'no LOGIN sent for a client that is gone');
    assert.ok(backend.destroyed || backend.readableEnded, 'the backend connection is closed');
    assert.deepEqual(s.gate.reports, []);
    assert.equal(await logins('backend_unavailable'), unavailable0);
  });
});
