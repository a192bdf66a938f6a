// Proves the greeting identity a real login reports to health equals the one the active probe computes for the same
// greeting, for multi-line greetings too (ManageSieve capability lines, SMTP 220-), so logins never fake a split brain.
// Must not open sockets (in-memory pairs, fake clock).
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendGate } from '../../../src/health/gate.js';
import { normaliseIdentity } from '../../../src/health/probe.js';
import { ProtocolService } from '../../../src/proxy/session.js';
import { sieveModule } from '../../../src/proxy/sieve/index.js';
import { FakeClock } from '../health/fake-clock.js';
import { accepted, fakeDialer, handlerDeps, socketPair, testConfig, type Behaviour } from './fakes.js';

const SIEVE_PORT = 4190;
// Dovecot Pigeonhole's greeting, as seen on the wire (several capability lines, then OK).
const GREETING = [
  '"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"',
  '"SIEVE" "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body"',
  '"NOTIFY" "mailto"',
  '"SASL" "PLAIN LOGIN"',
  '"VERSION" "1.0"',
  'OK "Dovecot node2 ready."',
];
const SIEVE_BACKEND: Behaviour = {
  kind: 'script',
  script: {
    greeting: GREETING.map((l) => `${l}\r\n`).join(''),
    reply: (line) => (/^AUTHENTICATE /.test(line) ? 'OK "Logged in."\r\n' : undefined),
  },
};

describe('greeting identity reported by a login', () => {
  it('ManageSieve: the whole capability greeting, as the probe sees it (not only its first line)', async () => {
    const clock = new FakeClock();
    const reports: Array<[string, string | undefined]> = [];
    const gate: BackendGate = { admit: (r: Route) => r, report: (_r, outcome, identity) => { reports.push([outcome, identity]); } };
    const config = testConfig({
      listeners: [{ protocol: 'sieve', address: '127.0.0.1', port: 0, tls: 'none' }],
      sieve: { requireTlsForAuth: false },
      backends: { b1: { host: 'b1.test', sieve: { port: SIEVE_PORT, tls: 'none' }, trustsProxy: false } },
    });
    const { dial } = fakeDialer({ [SIEVE_PORT]: SIEVE_BACKEND });
    const service = new ProtocolService({ ...handlerDeps(config, dial, clock, gate), module: sieveModule });
    const [client, server] = socketPair();
    client.collect();
    const conn = accepted('imap');
    service.handle(server.asSocket(), { ...conn, listener: { ...conn.listener, protocol: 'sieve' } });
    await clock.advance(0);
    client.write(`AUTHENTICATE "PLAIN" "${Buffer.from('\0alice\0secret').toString('base64')}"\r\n`);
    await clock.advance(0);
    await clock.advance(0);
    assert.match(client.text, /^OK "Logged in\."/m, client.text);
    assert.deepEqual(reports, [['ok', normaliseIdentity(GREETING)]]);
  });
});
