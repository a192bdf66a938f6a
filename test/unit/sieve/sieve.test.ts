// Proves the ManageSieve parser (split at every byte), the pre-login dialogue (capabilities, STARTTLS, AUTHENTICATE PLAIN/LOGIN/OAUTHBEARER, limits) and the backend login against Pigeonhole-like transcripts.
// Must not open sockets or use timers.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import { ProxyError } from '../../../src/errors.js';
import type { BackendAction, BackendLoginContext, ClientAction, DialogueOptions } from '../../../src/proxy/protocol.js';
import { encodePlain, encodeTokenResponse } from '../../../src/proxy/sasl.js';
import { createSieveBackendLogin } from '../../../src/proxy/sieve/backend-login.js';
import { createSieveDialogue } from '../../../src/proxy/sieve/dialogue.js';
import { SieveLineParser } from '../../../src/proxy/sieve/parser.js';
import { LIMITS, splits } from '../imap/helpers.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function parseAll(chunks: Buffer[]): unknown[] {
  const p = new SieveLineParser(LIMITS);
  const out: unknown[] = [];
  for (const c of chunks) {
    p.push(c);
    for (let r = p.next(); r; r = p.next()) out.push(r);
  }
  return out;
}

function options(over: Partial<DialogueOptions> = {}): DialogueOptions {
  return { tls: true, starttls: false, requireTlsForAuth: true, limits: LIMITS, greeting: 'test ready', ...over };
}
const text = (actions: ClientAction[]) => actions.map((a) => (a.kind === 'send' ? a.bytes.toString() : '')).join('');
const others = (actions: ClientAction[]) => actions.filter((a) => a.kind !== 'send');

function dialogue(over: Partial<DialogueOptions> = {}) {
  const d = createSieveDialogue(options(over));
  const greeting = text(d.start());
  return { d, greeting, feed: (s: string) => d.step({ kind: 'data', bytes: Buffer.from(s) }) };
}

describe('ManageSieve parser', () => {
  it('tokenises atoms, quoted strings and literals, at every split', () => {
    const input = Buffer.from('AUTHENTICATE "PLAIN" "AGFsaWNlAHNlY3JldA=="\r\nPUTSCRIPT "my \\"s\\"" {12+}\r\nkeep;\r\nstop;\r\nNOOP\r\n');
    for (const chunks of splits(input)) {
      assert.deepEqual(parseAll(chunks), [
        { type: 'line', tokens: [{ type: 'atom', value: 'AUTHENTICATE' }, { type: 'string', value: 'PLAIN' }, { type: 'string', value: 'AGFsaWNlAHNlY3JldA==' }] },
        { type: 'line', tokens: [{ type: 'atom', value: 'PUTSCRIPT' }, { type: 'string', value: 'my "s"' }, { type: 'string', value: 'keep;\r\nstop;' }] },
        { type: 'line', tokens: [{ type: 'atom', value: 'NOOP' }] },
      ]);
    }
  });

  it('reports syntax errors, long lines and over-limit literals', () => {
    assert.deepEqual(parseAll([Buffer.from('NOOP "unterminated\r\nNOOP"x"\r\n')]), [
      { type: 'error', error: 'SYNTAX', fatal: false },
      { type: 'error', error: 'SYNTAX', fatal: false },
    ]);
    assert.deepEqual(parseAll([Buffer.from(`NOOP "${'x'.repeat(600)}"\r\nNOOP\r\n`)]), [
      { type: 'error', error: 'LINE_TOO_LONG', fatal: false },
      { type: 'line', tokens: [{ type: 'atom', value: 'NOOP' }] },
    ]);
    assert.deepEqual(parseAll([Buffer.from('PUTSCRIPT "a" {65+}\r\n')]), [{ type: 'error', error: 'LITERAL_TOO_LARGE', fatal: true }]);
  });
});

describe('ManageSieve dialogue', () => {
  it('greets with capabilities (SASL empty before TLS when TLS is required) and offers STARTTLS', () => {
    const { greeting, feed, d } = dialogue({ tls: false, starttls: true });
    assert.match(greeting, /^"IMPLEMENTATION" "mailproxy"\r\n"SASL" ""\r\n"SIEVE" "fileinto [^"]*"\r\n"NOTIFY" "mailto"\r\n"STARTTLS"\r\n"VERSION" "1.0"\r\nOK "test ready"\r\n$/);
    assert.equal(text(feed('AUTHENTICATE "PLAIN" "' + encodePlain('alice', 'pw') + '"\r\n')), 'NO (ENCRYPT-NEEDED) "Plaintext authentication disallowed without TLS"\r\n');
    const st = feed('STARTTLS\r\nAUTHENTICATE "PLAIN" "injected"\r\n');
    assert.equal(text(st), 'OK "Begin TLS negotiation now"\r\n');
    assert.deepEqual(others(st), [{ kind: 'start-tls' }]);
    const after = d.step({ kind: 'tls-ready' });
    assert.match(text(after), /"SASL" "PLAIN LOGIN"\r\n[\s\S]*OK "TLS negotiation successful"\r\n$/);
    assert.doesNotMatch(text(after), /STARTTLS/);
  });

  it('AUTHENTICATE PLAIN with an initial response, then the backend OK and relay with pipelined bytes', () => {
    const { d, feed } = dialogue();
    const a = feed(`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'pw')}"\r\nLISTSCRIPTS\r\n`);
    assert.deepEqual(others(a), [{ kind: 'login', credentials: { user: 'alice', password: 'pw', mechanism: 'PLAIN' } }]);
    const ok = d.step({ kind: 'login-ok', text: 'OK "Logged in."' });
    assert.equal(text(ok), 'OK "Logged in."\r\n');
    const relay = others(ok)[0];
    assert.ok(relay && relay.kind === 'relay' && relay.pending.toString() === 'LISTSCRIPTS\r\n');
  });

  it('AUTHENTICATE LOGIN by continuation strings (quoted and literal), "*" cancels', () => {
    const { feed } = dialogue();
    assert.equal(text(feed('AUTHENTICATE "LOGIN"\r\n')), `"${b64('Username:')}"\r\n`);
    assert.equal(text(feed(`{${b64('alice').length}+}\r\n${b64('alice')}\r\n`)), `"${b64('Password:')}"\r\n`);
    assert.deepEqual(others(feed(`"${b64('pw')}"\r\n`)), [{ kind: 'login', credentials: { user: 'alice', password: 'pw', mechanism: 'LOGIN' } }]);
    const c = dialogue();
    c.feed('AUTHENTICATE "PLAIN"\r\n');
    assert.equal(text(c.feed('"*"\r\n')), 'NO "Authentication cancelled"\r\n');
  });

  it('OAUTHBEARER only when configured; a refused token gets the RFC 7628 error challenge, then NO', () => {
    const plain = dialogue();
    assert.equal(text(plain.feed(`AUTHENTICATE "OAUTHBEARER" "${encodeTokenResponse('OAUTHBEARER', 'alice', 'tok')}"\r\n`)), 'NO "Unsupported authentication mechanism"\r\n');
    const { d, feed, greeting } = dialogue({ tokenMechanisms: ['OAUTHBEARER', 'XOAUTH2'], oauthChallenge: { scope: 'mail' } });
    assert.match(greeting, /"SASL" "PLAIN LOGIN OAUTHBEARER XOAUTH2"/);
    assert.deepEqual(others(feed(`AUTHENTICATE "OAUTHBEARER" "${encodeTokenResponse('OAUTHBEARER', 'alice', 'tok')}"\r\n`)),
      [{ kind: 'login', credentials: { user: 'alice', token: 'tok', mechanism: 'OAUTHBEARER' } }]);
    const challenge = text(d.step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') }));
    const json = JSON.parse(Buffer.from(/^"(.*)"\r\n$/.exec(challenge)![1]!, 'base64').toString());
    assert.deepEqual(json, { status: 'invalid_token', scope: 'mail' });
    assert.equal(text(feed('"AQ=="\r\n')), 'NO "Authentication failed"\r\n');
    // Provider unreachable: the temporary error at once, no challenge.
    feed(`AUTHENTICATE "XOAUTH2" "${encodeTokenResponse('XOAUTH2', 'alice', 'tok')}"\r\n`);
    assert.equal(text(d.step({ kind: 'login-failed', error: new ProxyError('IDP_UNAVAILABLE') })), 'NO (TRYLATER) "Temporary failure, please try again later"\r\n');
  });

  it('refuses commands that need a login, counts bad commands and closes at the limit', () => {
    const { feed } = dialogue();
    assert.equal(text(feed('LISTSCRIPTS\r\n')), 'NO "Authenticate first"\r\n');
    feed('FOO\r\nBAR\r\nBAZ\r\n');
    const last = feed('QUX\r\n');
    assert.equal(text(last), 'NO "Unknown command"\r\nBYE "Too many invalid commands"\r\n');
    assert.deepEqual(others(last), [{ kind: 'close', reason: 'TOO_MANY_ERRORS' }]);
  });

  it('NOOP echoes its tag, LOGOUT closes, the deadline says BYE', () => {
    const { feed, d } = dialogue();
    assert.equal(text(feed('NOOP "t1"\r\n')), 'OK (TAG "t1") "Done"\r\n');
    const bye = d.step({ kind: 'deadline' });
    assert.equal(text(bye), 'BYE "Disconnected for inactivity"\r\n');
    const l = dialogue().feed('LOGOUT\r\n');
    assert.deepEqual(others(l), [{ kind: 'close', reason: 'LOGOUT' }]);
  });

  it('a kick before login says the kicking error\'s own goodbye (operator, shutdown), not the inactivity one', () => {
    const kicked = dialogue().d.step({ kind: 'kick', error: new ProxyError('ADMIN_KICK') });
    assert.equal(text(kicked), 'BYE (TRYLATER) "Session closed by the administrator, please reconnect"\r\n');
    assert.deepEqual(others(kicked), [{ kind: 'close', reason: 'ADMIN_KICK' }]);
    const down = dialogue().d.step({ kind: 'kick', error: new ProxyError('SHUTDOWN') });
    assert.equal(text(down), 'BYE (TRYLATER) "Server shutting down, please reconnect"\r\n');
    assert.deepEqual(others(down), [{ kind: 'close', reason: 'SHUTDOWN' }]);
  });
});

const ROUTE: Route = { backend: 'a', protocol: 'sieve', host: '127.0.0.1', port: 4190, tls: 'none', tlsVerify: true, servername: 'a', trustsProxy: true, forwardClientAddress: 'native' };
const GREETING = ['"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"', '"SIEVE" "fileinto reject envelope"', '"NOTIFY" "mailto"', '"SASL" "PLAIN LOGIN OAUTHBEARER XOAUTH2"', '"STARTTLS"', '"XCLIENT"', '"VERSION" "1.0"', 'OK "Dovecot (Debian) ready."'];

function ctx(over: Partial<BackendLoginContext> = {}): BackendLoginContext {
  return { user: 'alice', password: 'pw', route: ROUTE, sessionId: 'S1', forwardClient: false, client: { address: '192.0.2.7', port: 50123, localAddress: '10.0.0.1', localPort: 4190 }, ...over };
}
function run(bl: ReturnType<typeof createSieveBackendLogin>, lines: string[]): unknown[] {
  const out: BackendAction[] = [];
  for (const line of lines) out.push(...bl.step({ kind: 'line', line }));
  return out.map((a) => (a.kind === 'send' ? a.bytes.toString() : a.kind === 'fail' ? { fail: a.error.code } : a));
}

describe('ManageSieve backend login', () => {
  it('waits for the capability list, forwards the client with XCLIENT, AUTHENTICATE PLAIN with an initial response', () => {
    const bl = createSieveBackendLogin(ctx({ forwardClient: true }));
    assert.deepEqual(run(bl, GREETING), ['XCLIENT ADDR=192.0.2.7 PORT=50123 SESSION=S1\r\n']);
    assert.deepEqual(run(bl, ['OK "Updated"']), [`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'pw')}"\r\n`]);
    assert.deepEqual(run(bl, ['OK "Logged in."']), [{ kind: 'done', text: 'OK "Logged in."' }]);
  });

  it('STARTTLS first when the route says so; capabilities read again after the handshake', () => {
    const bl = createSieveBackendLogin(ctx({ route: { ...ROUTE, tls: 'starttls' } }));
    assert.deepEqual(run(bl, GREETING), ['STARTTLS\r\n']);
    assert.deepEqual(run(bl, ['OK "Begin TLS negotiation now."']), [{ kind: 'start-tls' }]);
    assert.deepEqual(bl.step({ kind: 'tls-ready' }), []);
    assert.deepEqual(run(bl, GREETING.filter((l) => l !== '"STARTTLS"')), [`AUTHENTICATE "PLAIN" "${encodePlain('alice', 'pw')}"\r\n`]);
  });

  it('passes a token on with the same mechanism; an error challenge is acknowledged and ends as BACKEND_AUTH_FAILED', () => {
    const bl = createSieveBackendLogin(ctx({ token: { mechanism: 'OAUTHBEARER', token: 'tok' } }));
    assert.deepEqual(run(bl, GREETING), [`AUTHENTICATE "OAUTHBEARER" "${encodeTokenResponse('OAUTHBEARER', 'alice', 'tok')}"\r\n`]);
    assert.deepEqual(run(bl, ['"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0="']), ['"AQ=="\r\n']);
    assert.deepEqual(run(bl, ['NO "Authentication failed."']), [{ fail: 'BACKEND_AUTH_FAILED' }]);
  });

  it('maps failures: TRYLATER and BYE are temporary, a missing mechanism is a protocol problem', () => {
    assert.deepEqual(run(createSieveBackendLogin(ctx()), [...GREETING, 'NO (TRYLATER) "Try later"']).slice(-1), [{ fail: 'BACKEND_UNAVAILABLE' }]);
    assert.deepEqual(run(createSieveBackendLogin(ctx()), ['BYE "go away"']), [{ fail: 'BACKEND_UNAVAILABLE' }]);
    const noOauth = GREETING.map((l) => (l.startsWith('"SASL"') ? '"SASL" "PLAIN"' : l));
    assert.deepEqual(run(createSieveBackendLogin(ctx({ token: { mechanism: 'XOAUTH2', token: 't' } })), noOauth), [{ fail: 'BACKEND_PROTOCOL' }]);
  });
});
