// Proves the SMTP/LMTP listeners' handling of a trusted upstream's XCLIENT: TTL taken out and kept, the rest handed to
// smtp-server, TTL advertised; and the hop count applied when a backend session is requested (refused when spent).
// Must not open sockets (the real smtp-server is exercised in the loop-protection integration test).
import assert from 'node:assert/strict';
import { ProxyError } from '../../../src/errors.js';
import { configSchema } from '../../../src/config/schema.js';
import { UPSTREAM_XCLIENT, acceptUpstreamXclient, splitXclient, type UpstreamInfo, type XclientConnection } from '../../../src/proxy/smtp/upstream-xclient.js';
import { backendRequest } from '../../../src/proxy/smtp/transaction.js';
import type { ConnState } from '../../../src/proxy/smtp/frontend.js';

describe('smtp upstream XCLIENT: splitting the command', () => {
  it('takes TTL out and passes the attributes smtp-server applies', () => {
    assert.deepEqual(splitXclient('XCLIENT ADDR=192.0.2.7 PORT=4711 TTL=4'), { ok: true, ttl: '4', forward: 'XCLIENT ADDR=192.0.2.7 PORT=4711' });
    assert.deepEqual(splitXclient('xclient ttl=3 helo=mx.example'), { ok: true, ttl: '3', forward: 'XCLIENT helo=mx.example' });
  });
  it('drops attributes we do not advertise (LOGIN, SESSION, FORWARD…): nobody logs in on an upstream\'s word', () => {
    assert.deepEqual(splitXclient('XCLIENT ADDR=192.0.2.7 LOGIN=alice SESSION=abc FORWARD=eA== TTL=2'), { ok: true, ttl: '2', forward: 'XCLIENT ADDR=192.0.2.7' });
  });
  it('TTL alone still reaches smtp-server as a command that changes nothing (so it greets again)', () => {
    assert.deepEqual(splitXclient('XCLIENT TTL=5'), { ok: true, ttl: '5', forward: 'XCLIENT PROTO=[UNAVAILABLE]' });
  });
  it('refuses malformed lines and TTL values', () => {
    for (const bad of ['XCLIENT', 'XCLIENT TTL=', 'XCLIENT TTL=-1', 'XCLIENT TTL=x', 'XCLIENT TTL=12345', 'XCLIENT ADDR']) {
      assert.equal(splitXclient(bad).ok, false, bad);
    }
  });
});

/** A stand-in with smtp-server 3.x's behaviour: EHLO lists its fixed XCLIENT line; XCLIENT greets (220) or answers 501. */
function fakeConnection(accept: boolean) {
  const sent: Array<{ code: number; data: string | string[] }> = [];
  const seen: string[] = [];
  const c: XclientConnection = {
    remoteAddress: '127.0.0.1',
    remotePort: 40000,
    send(code, data) { sent.push({ code, data }); },
    handler_XCLIENT(command, callback) {
      seen.push(command.toString());
      if (accept) { const m = /ADDR=(\S+)/.exec(command.toString()); if (m) this.remoteAddress = m[1]!; this.send(220, 'mx ESMTP'); } else this.send(501, 'Error: Bad command parameter syntax');
      callback();
    },
  };
  return { c, sent, seen };
}

describe('smtp upstream XCLIENT: on the connection', () => {
  it('advertises TTL in place of smtp-server\'s own XCLIENT line', () => {
    const { c, sent } = fakeConnection(true);
    acceptUpstreamXclient(c, {});
    c.send(250, ['mx Hello', 'PIPELINING', 'XCLIENT NAME ADDR PORT PROTO HELO LOGIN', '8BITMIME']);
    assert.deepEqual(sent[0]!.data, ['mx Hello', 'PIPELINING', UPSTREAM_XCLIENT, '8BITMIME']);
  });
  it('keeps the hop count and forwarded client only when smtp-server took the command', async () => {
    const ok = fakeConnection(true);
    const info: UpstreamInfo = {};
    acceptUpstreamXclient(ok.c, info);
    await new Promise<void>((r) => ok.c.handler_XCLIENT(Buffer.from('XCLIENT ADDR=192.0.2.7 PORT=4711 TTL=3'), r));
    assert.deepEqual(ok.seen, ['XCLIENT ADDR=192.0.2.7 PORT=4711']);
    assert.deepEqual(info, { ttl: '3', client: { address: '192.0.2.7', port: 40000 } });

    const refused = fakeConnection(false);
    const none: UpstreamInfo = {};
    acceptUpstreamXclient(refused.c, none);
    await new Promise<void>((r) => refused.c.handler_XCLIENT(Buffer.from('XCLIENT ADDR=nonsense TTL=1'), r));
    assert.deepEqual(none, {}, 'a refused XCLIENT changes nothing');
  });
  it('answers a malformed TTL itself, 501, without calling smtp-server', async () => {
    const { c, sent, seen } = fakeConnection(true);
    const info: UpstreamInfo = {};
    acceptUpstreamXclient(c, info);
    await new Promise<void>((r) => c.handler_XCLIENT(Buffer.from('XCLIENT TTL=many'), r));
    assert.equal(seen.length, 0);
    assert.equal(sent[0]!.code, 501);
    assert.deepEqual(info, {});
  });
});

describe('smtp backend request: hop count', () => {
  const config = configSchema.parse({
    listeners: [{ protocol: 'smtp', address: '127.0.0.1', port: 10025, tls: 'none' }],
    directory: { type: 'static', static: { file: 'x' } },
    loopProtection: { proxyTtl: 5, trustedNetworks: ['127.0.0.0/8'] },
  });
  const client = { address: '127.0.0.1', port: 40000, localAddress: '127.0.0.1', localPort: 10025 };
  const state = (upstream?: UpstreamInfo) => ({ config, conn: { id: 'c1', client }, upstream, log: { debug() {} }, trace: {} }) as unknown as ConnState;

  it('without an upstream: the configured budget minus one, the connection\'s client', () => {
    const r = backendRequest(state(), false, 'b', {});
    assert.equal(r.login.proxyTtl, 4);
    assert.equal(r.client, client);
  });
  it('an upstream\'s TTL is counted down; its forwarded client is what the backend is told', () => {
    const r = backendRequest(state({ ttl: '3', client: { address: '192.0.2.7', port: 4711 } }), false, 'b', {});
    assert.equal(r.login.proxyTtl, 2);
    assert.deepEqual(r.client, { ...client, address: '192.0.2.7', port: 4711 });
    assert.equal(backendRequest(state({ ttl: '50' }), false, 'b', {}).login.proxyTtl, 4, 'never more than our own budget');
  });
  it('a spent hop count is ROUTE_LOOP (answered with the temporary error)', () => {
    assert.throws(() => backendRequest(state({ ttl: '1' }), false, 'b', {}), (e: unknown) => e instanceof ProxyError && e.code === 'ROUTE_LOOP');
  });
});
