// Proves ManageSieve hop counting: XCLIENT offered to and taken from trusted upstream proxies only (as Pigeonhole does), its
// fields passed with the login, and the backend login's XCLIENT carrying TTL and the forwarded client like Pigeonhole's proxy.
// Must not open sockets or use timers.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendAction, BackendLoginContext, ClientAction } from '../../../src/proxy/protocol.js';
import { encodePlain } from '../../../src/proxy/sasl.js';
import { createSieveBackendLogin } from '../../../src/proxy/sieve/backend-login.js';
import { createSieveDialogue, parseSieveXclient } from '../../../src/proxy/sieve/dialogue.js';
import { LIMITS } from '../imap/helpers.js';

const text = (actions: ClientAction[]) => actions.map((a) => (a.kind === 'send' ? a.bytes.toString() : '')).join('');
const atoms = (...v: string[]) => v.map((value) => ({ type: 'atom' as const, value }));

function dialogue(trustedUpstream: boolean) {
  const d = createSieveDialogue({ tls: true, starttls: false, requireTlsForAuth: true, limits: LIMITS, greeting: 'ready', ...(trustedUpstream ? { trustedUpstream } : {}) });
  const greeting = text(d.start());
  return { greeting, feed: (s: string) => d.step({ kind: 'data', bytes: Buffer.from(s) }) };
}

describe('ManageSieve XCLIENT from upstream proxies', () => {
  it('a trusted upstream is offered XCLIENT; its TTL, address and port go with the login in IMAP ID names', () => {
    const { greeting, feed } = dialogue(true);
    assert.match(greeting, /^"XCLIENT"\r\n/m);
    assert.equal(text(feed('XCLIENT ADDR=192.0.2.7 PORT=4711 SESSION=up-1 TTL=3\r\n')), 'OK "Updated"\r\n');
    const login = feed(`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'pw')}"\r\n`).find((a) => a.kind === 'login');
    assert.deepEqual(login && login.kind === 'login' ? login.clientId : undefined, { 'x-originating-ip': '192.0.2.7', 'x-originating-port': '4711', 'x-session-id': 'up-1', 'x-proxy-ttl': '3' });
  });

  it('anyone else is not offered XCLIENT and gets NO, as from Pigeonhole; the login carries nothing', () => {
    const { greeting, feed } = dialogue(false);
    assert.doesNotMatch(greeting, /XCLIENT/);
    assert.match(text(feed('XCLIENT TTL=1\r\n')), /^NO "You are not from trusted IP"/);
    const login = feed(`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'pw')}"\r\n`).find((a) => a.kind === 'login');
    assert.ok(login && login.kind === 'login' && login.clientId === undefined);
  });

  it('malformed parameters are refused', () => {
    const { feed } = dialogue(true);
    assert.match(text(feed('XCLIENT TTL=x\r\n')), /^NO "Invalid XCLIENT parameters"/);
    for (const bad of [atoms(), atoms('TTL=-1'), atoms('ADDR=not-an-ip'), atoms('PORT=70000'), atoms('TTL'), [{ type: 'string' as const, value: 'TTL=1' }]]) {
      assert.equal(parseSieveXclient(bad), null, JSON.stringify(bad));
    }
    assert.deepEqual(parseSieveXclient(atoms('TTL=2', 'FORWARD=eA==', 'ADDR=2001:db8::1')), { 'x-proxy-ttl': '2', 'x-originating-ip': '2001:db8::1' });
  });
});

const ROUTE: Route = { backend: 'a', protocol: 'sieve', host: '127.0.0.1', port: 4190, tls: 'none', tlsVerify: true, servername: 'a', trustsProxy: true, forwardClientAddress: 'native' };
const GREETING = ['"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"', '"SASL" "PLAIN LOGIN"', '"XCLIENT"', '"VERSION" "1.0"', 'OK "Dovecot (Debian) ready."'];
function ctx(over: Partial<BackendLoginContext> = {}): BackendLoginContext {
  return { user: 'alice', password: 'pw', route: ROUTE, sessionId: 'S1', forwardClient: true, client: { address: '10.0.0.9', port: 50123, localAddress: '10.0.0.1', localPort: 4190 }, ...over };
}
function run(login: ReturnType<typeof createSieveBackendLogin>, lines: string[]): string[] {
  const out: BackendAction[] = [];
  for (const line of lines) out.push(...login.step({ kind: 'line', line }));
  return out.map((a) => (a.kind === 'send' ? a.bytes.toString() : a.kind));
}

describe('ManageSieve backend login: hop count', () => {
  it('sends TTL with the client, like Pigeonhole\'s managesieve proxy (ADDR PORT SESSION TTL)', () => {
    assert.deepEqual(run(createSieveBackendLogin(ctx({ proxyTtl: 4 })), GREETING), ['XCLIENT ADDR=10.0.0.9 PORT=50123 SESSION=S1 TTL=4\r\n']);
  });
  it('a trusted upstream\'s forwarded client is the one named to the backend', () => {
    const up = { 'x-originating-ip': '192.0.2.7', 'x-originating-port': '4711', 'x-proxy-ttl': '3' };
    assert.deepEqual(run(createSieveBackendLogin(ctx({ proxyTtl: 2, clientId: up })), GREETING), ['XCLIENT ADDR=192.0.2.7 PORT=4711 SESSION=S1 TTL=2\r\n']);
  });
});
