// Proves the relay on in-memory sockets and a fake clock: bytes both ways, the swept idle timeout (traffic in either
// direction keeps it open, silence closes it with the goodbye), batched byte counters, the result when both sides close,
// a client half-close passed on with the replies still delivered.
import assert from 'node:assert/strict';
import { Relay, type RelayResult } from '../../../src/proxy/relay.js';
import { registry } from '../../../src/metrics.js';
import { FakeClock } from '../health/fake-clock.js';
import { socketPair, type FakeSocket } from './fakes.js';

interface Setup { clock: FakeClock; client: FakeSocket; backend: FakeSocket; relay: Relay; results: RelayResult[] }

function setup(idleTimeoutMs: number, protocol = 'imap'): Setup {
  const clock = new FakeClock();
  const [client, proxyClientSide] = socketPair();
  const [proxyBackendSide, backend] = socketPair();
  client.collect();
  backend.collect();
  const results: RelayResult[] = [];
  const relay = new Relay(proxyClientSide.asSocket(), proxyBackendSide.asSocket(), {
    protocol, idleTimeoutMs, clock, idleGoodbye: '* BYE idle\r\n', pendingDown: Buffer.from('* early\r\n'), onDone: (r) => results.push(r),
  });
  relay.start();
  return { clock, client, backend, relay, results };
}

async function relayBytes(protocol: string, direction: string): Promise<number> {
  const m = await registry.getSingleMetric('mailproxy_relay_bytes_total')!.get();
  return m.values.find((v) => v.labels['protocol'] === protocol && v.labels['direction'] === direction)?.value ?? 0;
}

describe('relay', () => {
  it('moves bytes both ways, pending bytes first', async () => {
    const s = setup(60_000);
    s.client.write('a NOOP\r\n');
    s.backend.write('a OK done\r\n');
    await s.clock.advance(0);
    assert.equal(s.client.text, '* early\r\na OK done\r\n');
    assert.equal(s.backend.text, 'a NOOP\r\n');
  });

  it('closes a silent splice after the idle timeout with the goodbye, and reports counts once both sides are gone', async () => {
    const s = setup(10_000);
    s.client.write('a NOOP\r\n');
    await s.clock.advance(9_000);
    assert.equal(s.results.length, 0);
    await s.clock.advance(6_000);
    assert.match(s.client.text, /\* BYE idle\r\n$/);
    assert.equal(s.results.length, 1);
    assert.equal(s.results[0]!.reason, 'IDLE_TIMEOUT');
    assert.equal(s.results[0]!.closedBy, 'proxy');
    assert.equal(s.results[0]!.bytesUp, 8);
    assert.equal(s.results[0]!.bytesDown, 9);
  });

  it('stays open while either direction moves bytes', async () => {
    const s = setup(10_000);
    for (let i = 0; i < 6; i++) {
      (i % 2 ? s.client : s.backend).write('x\r\n');
      await s.clock.advance(5_000);
    }
    assert.equal(s.results.length, 0, 'traffic every 5 s keeps a 10 s idle timeout from firing');
    await s.clock.advance(20_000);
    assert.equal(s.results.length, 1);
  });

  it('passes a client half-close on and still delivers the backend replies to it until the backend closes', async () => {
    const s = setup(60_000);
    s.backend.allowHalfOpen = true; // like Dovecot: answers what it read before the FIN, then closes
    s.client.write('b SELECT INBOX\r\nc LOGOUT\r\n');
    s.client.end();
    await s.clock.advance(0);
    assert.equal(s.backend.text, 'b SELECT INBOX\r\nc LOGOUT\r\n');
    assert.equal(s.results.length, 0, 'the client side stays open for the replies');
    s.backend.write('b OK selected\r\n* BYE bye\r\nc OK done\r\n');
    s.backend.end();
    await s.clock.advance(0);
    assert.equal(s.client.text, '* early\r\nb OK selected\r\n* BYE bye\r\nc OK done\r\n');
    assert.equal(s.results.length, 1);
    assert.equal(s.results[0]!.closedBy, 'client');
    assert.equal(s.results[0]!.reason, 'CLIENT_CLOSED');
  });

  it('adds byte counts to mailproxy_relay_bytes_total while the splice runs', async () => {
    const s = setup(60_000, 'relaytest');
    s.backend.write(Buffer.alloc(1000, 0x61));
    await s.clock.advance(0);
    assert.equal(await relayBytes('relaytest', 'down'), 1009, 'read before the session ends (flushed at scrape)');
    s.client.end();
    s.backend.end();
    await s.clock.advance(0);
    assert.equal(s.results.length, 1);
    assert.equal(await relayBytes('relaytest', 'down'), 1009, 'not counted twice at the end');
    assert.equal(s.clock.pending, 0, 'no sweep timer left once no relay is live');
  });
});
