// Proves the IMAP backend login against Dovecot-like transcripts: greeting, CAPABILITY, STARTTLS, ID, LOGIN literals, failures.
// Must not open sockets; backend lines are fed by hand.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import { ProxyError } from '../../../src/errors.js';
import { createImapBackendLogin } from '../../../src/proxy/imap/backend-login.js';
import { imapModule } from '../../../src/proxy/imap/index.js';
import type { BackendAction, BackendLogin, BackendLoginContext } from '../../../src/proxy/protocol.js';

const ROUTE: Route = { backend: 'a', protocol: 'imap', host: '127.0.0.1', port: 143, tls: 'none', tlsVerify: true, servername: 'a', trustsProxy: true, forwardClientAddress: 'native' };
const DOVECOT = '* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.';
const LOGGED_IN = 'OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ MOVE] Logged in';

function ctx(over: Partial<BackendLoginContext> = {}): BackendLoginContext {
  return {
    user: 'alice', password: 'sëcret', route: ROUTE, sessionId: 'S1', forwardClient: false,
    client: { address: '192.0.2.7', port: 50123, localAddress: '10.0.0.1', localPort: 143 },
    ...over,
  };
}

/** Actions with sent bytes as strings, so transcripts read like the wire. */
function show(actions: BackendAction[]): unknown[] {
  return actions.map((a) => (a.kind === 'send' ? a.bytes.toString() : a.kind === 'fail' ? { fail: a.error.code } : a));
}

function line(bl: BackendLogin, text: string): unknown[] {
  return show(bl.step({ kind: 'line', line: text }));
}

function failure(actions: BackendAction[]): ProxyError {
  const a = actions.find((x) => x.kind === 'fail');
  assert.ok(a && a.kind === 'fail', 'expected a fail action');
  return a.error;
}

describe('imap backend login', () => {
  it('Dovecot with LITERAL+: ID and LOGIN pipelined, non-synchronising literals, OK text passed on', () => {
    const bl = createImapBackendLogin(ctx({ forwardClient: true, clientId: { name: 'Thunderbird', 'x-originating-ip': '6.6.6.6', note: 'a "q" \\ ü' } }));
    assert.deepEqual(line(bl, DOVECOT), [
      'mp1 ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "50123" "x-connected-ip" "10.0.0.1" "x-connected-port" "143" "x-session-id" "S1" "name" "Thunderbird" "note" "a \\"q\\" \\\\ ?")\r\n' +
        'mp2 LOGIN {5+}\r\nalice {7+}\r\nsëcret\r\n',
    ]);
    assert.deepEqual(line(bl, '* ID NIL'), []);
    assert.deepEqual(line(bl, 'mp1 OK ID completed.'), []);
    assert.deepEqual(line(bl, `mp2 ${LOGGED_IN}`), [{ kind: 'done', text: LOGGED_IN }]);
    assert.deepEqual(line(bl, '* OK more'), []);
  });

  it('sends the hop count as x-proxy-ttl with the client address, and never the client\'s own x-proxy-ttl', () => {
    const bl = createImapBackendLogin(ctx({ forwardClient: true, proxyTtl: 4, clientId: { 'x-proxy-ttl': '99', name: 'up' } }));
    const [sent] = line(bl, DOVECOT) as string[];
    assert.match(sent!, /^mp1 ID \(.*"x-session-id" "S1" "x-proxy-ttl" "4" "name" "up"\)\r\n/);
    assert.doesNotMatch(sent!, /"99"/);
  });

  it('without LITERAL+ waits for "+" before each literal', () => {
    const bl = createImapBackendLogin(ctx());
    assert.deepEqual(line(bl, '* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready'), ['mp1 LOGIN {5}\r\n']);
    assert.deepEqual(line(bl, '+ OK'), ['alice {7}\r\n']);
    assert.deepEqual(line(bl, '+ OK'), ['sëcret\r\n']);
    assert.deepEqual(line(bl, 'mp1 OK Logged in'), [{ kind: 'done', text: 'OK Logged in' }]);
  });

  it('LITERAL- allows non-synchronising literals only up to 4096 bytes', () => {
    const password = 'p'.repeat(5000);
    const bl = createImapBackendLogin(ctx({ password }));
    assert.deepEqual(line(bl, '* OK [CAPABILITY IMAP4rev1 LITERAL-] ready'), [`mp1 LOGIN {5+}\r\nalice {5000}\r\n`]);
    assert.deepEqual(line(bl, '+ go ahead'), [`${password}\r\n`]);
  });

  it('asks for CAPABILITY when the greeting has none', () => {
    const bl = createImapBackendLogin(ctx());
    assert.deepEqual(line(bl, '* OK IMAP4rev1 ready'), ['mp1 CAPABILITY\r\n']);
    assert.deepEqual(line(bl, '* CAPABILITY IMAP4rev1 LITERAL+ ID'), []);
    assert.deepEqual(line(bl, 'mp1 OK done'), ['mp2 LOGIN {5+}\r\nalice {7+}\r\nsëcret\r\n']);
  });

  it('STARTTLS first, then discards the pre-TLS capabilities and asks again', () => {
    const bl = createImapBackendLogin(ctx({ route: { ...ROUTE, tls: 'starttls' }, forwardClient: true }));
    assert.deepEqual(line(bl, DOVECOT), ['mp1 STARTTLS\r\n']);
    assert.deepEqual(line(bl, 'mp1 OK Begin TLS negotiation now.'), [{ kind: 'start-tls' }]);
    assert.deepEqual(show(bl.step({ kind: 'tls-ready' })), ['mp2 CAPABILITY\r\n']);
    assert.deepEqual(line(bl, '* CAPABILITY IMAP4rev1 AUTH=PLAIN'), []);
    assert.deepEqual(line(bl, 'mp2 OK Pre-login capabilities listed, post-login capabilities have more.'), ['mp3 LOGIN {5}\r\n']);
  });

  it('fails when STARTTLS is refused, or lines arrive before the handshake', () => {
    const a = createImapBackendLogin(ctx({ route: { ...ROUTE, tls: 'starttls' } }));
    a.step({ kind: 'line', line: DOVECOT });
    assert.equal(failure(a.step({ kind: 'line', line: 'mp1 BAD no TLS' })).code, 'BACKEND_PROTOCOL');
    const b = createImapBackendLogin(ctx({ route: { ...ROUTE, tls: 'starttls' } }));
    b.step({ kind: 'line', line: DOVECOT });
    b.step({ kind: 'line', line: 'mp1 OK go' });
    assert.equal(failure(b.step({ kind: 'line', line: '* OK injected' })).code, 'BACKEND_PROTOCOL');
  });

  it('sends no ID unless forwarding to a backend that advertises it; maps IPv4-mapped addresses', () => {
    const noId = createImapBackendLogin(ctx({ forwardClient: true }));
    assert.deepEqual(line(noId, '* OK [CAPABILITY IMAP4rev1 LITERAL+] hi'), ['mp1 LOGIN {5+}\r\nalice {7+}\r\nsëcret\r\n']);
    const mapped = createImapBackendLogin(ctx({ forwardClient: true, client: { address: '::ffff:192.0.2.9', port: 1, localAddress: '2001:db8::1', localPort: 993 } }));
    assert.match(String(line(mapped, DOVECOT)[0]), /^mp1 ID \("x-originating-ip" "192\.0\.2\.9" "x-originating-port" "1" "x-connected-ip" "2001:db8::1" "x-connected-port" "993"/);
  });

  it('ignores a refused ID', () => {
    const bl = createImapBackendLogin(ctx({ forwardClient: true }));
    line(bl, DOVECOT);
    assert.deepEqual(line(bl, 'mp1 NO not trusted'), []);
    assert.deepEqual(line(bl, 'mp2 OK Logged in'), [{ kind: 'done', text: 'OK Logged in' }]);
  });

  it('NO is BACKEND_AUTH_FAILED with the backend text as log detail only', () => {
    const bl = createImapBackendLogin(ctx());
    line(bl, DOVECOT);
    const e = failure(bl.step({ kind: 'line', line: 'mp1 NO [AUTHENTICATIONFAILED] Authentication failed.' }));
    assert.equal(e.code, 'BACKEND_AUTH_FAILED');
    assert.equal(e.detail, 'LOGIN: NO [AUTHENTICATIONFAILED] Authentication failed.');
    assert.deepEqual(line(bl, 'mp1 OK late'), []);
  });

  it('NO [UNAVAILABLE] is a temporary backend failure, BAD a protocol failure', () => {
    const a = createImapBackendLogin(ctx());
    line(a, DOVECOT);
    assert.equal(failure(a.step({ kind: 'line', line: 'mp1 NO [UNAVAILABLE] Temporary authentication failure.' })).code, 'BACKEND_UNAVAILABLE');
    const b = createImapBackendLogin(ctx());
    line(b, DOVECOT);
    assert.equal(failure(b.step({ kind: 'line', line: 'mp1 BAD Error in IMAP command' })).code, 'BACKEND_PROTOCOL');
  });

  it('NO [LIMIT] / [INUSE] concern this user only (not a password verdict, not a backend failure); SERVERBUG is a backend failure', () => {
    for (const [reply, code] of [['mp1 NO [LIMIT] Too many connections', 'BACKEND_USER_BUSY'], ['mp1 NO [INUSE] Mailbox locked', 'BACKEND_USER_BUSY'], ['mp1 NO [SERVERBUG] Internal error', 'BACKEND_UNAVAILABLE']] as const) {
      const bl = createImapBackendLogin(ctx());
      line(bl, DOVECOT);
      assert.equal(failure(bl.step({ kind: 'line', line: reply })).code, code, reply);
    }
    assert.equal(new ProxyError('BACKEND_USER_BUSY').spec.health, 'backend-alive');
    assert.match(new ProxyError('BACKEND_USER_BUSY').spec.imap, /^NO \[UNAVAILABLE\]/);
  });

  it('a refused synchronising literal fails the login', () => {
    const bl = createImapBackendLogin(ctx());
    line(bl, '* OK [CAPABILITY IMAP4rev1] hi');
    assert.equal(failure(bl.step({ kind: 'line', line: 'mp1 NO too long' })).code, 'BACKEND_AUTH_FAILED');
  });

  it('rejects bad greetings', () => {
    const cases: Array<[string, string]> = [
      ['HTTP/1.1 400 Bad Request', 'BACKEND_PROTOCOL'],
      ['* PREAUTH [CAPABILITY IMAP4rev1] already in', 'BACKEND_PROTOCOL'],
      ['* BYE Too many connections', 'BACKEND_UNAVAILABLE'],
      ['+OK POP3 ready', 'BACKEND_PROTOCOL'],
    ];
    for (const [greeting, code] of cases) {
      const bl = createImapBackendLogin(ctx());
      assert.equal(failure(bl.step({ kind: 'line', line: greeting })).code, code, greeting);
      assert.deepEqual(bl.step({ kind: 'line', line: '* OK' }), []);
    }
  });

  it('fails on BYE, unknown tags, stray continuations and LOGINDISABLED', () => {
    const bye = createImapBackendLogin(ctx());
    line(bye, DOVECOT);
    assert.equal(failure(bye.step({ kind: 'line', line: '* BYE shutting down' })).code, 'BACKEND_UNAVAILABLE');
    const tag = createImapBackendLogin(ctx());
    line(tag, DOVECOT);
    assert.equal(failure(tag.step({ kind: 'line', line: 'zz OK what' })).code, 'BACKEND_PROTOCOL');
    const plus = createImapBackendLogin(ctx());
    line(plus, DOVECOT);
    assert.equal(failure(plus.step({ kind: 'line', line: '+ ' })).code, 'BACKEND_PROTOCOL');
    const disabled = createImapBackendLogin(ctx());
    assert.equal(failure(disabled.step({ kind: 'line', line: '* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi' })).code, 'BACKEND_PROTOCOL');
    const early = createImapBackendLogin(ctx());
    assert.equal(failure(early.step({ kind: 'tls-ready' })).code, 'BACKEND_PROTOCOL');
  });

  it('never puts the password in a failure', () => {
    const bl = createImapBackendLogin(ctx({ password: 'Sup3rS3cret' }));
    line(bl, DOVECOT);
    const e = failure(bl.step({ kind: 'line', line: 'mp1 NO nope' }));
    assert.ok(!e.message.includes('Sup3rS3cret'));
  });

  it('refuses credentials containing NUL without sending them', () => {
    const bl = createImapBackendLogin(ctx({ password: 'a\0b' }));
    assert.deepEqual(line(bl, DOVECOT), [{ fail: 'AUTH_FAILED' }]);
  });
});

describe('imapModule', () => {
  it('names the protocol and says goodbye with an untagged BYE', () => {
    assert.equal(imapModule.protocol, 'imap');
    assert.equal(imapModule.goodbye(new ProxyError('BACKEND_DOWN')), '* BYE [UNAVAILABLE] Temporary failure, please try again later\r\n');
    assert.equal(imapModule.goodbye(new ProxyError('SHUTDOWN')), '* BYE [UNAVAILABLE] Server shutting down, please reconnect\r\n');
    assert.equal(imapModule.goodbye(new ProxyError('IDLE_TIMEOUT')), '* BYE Disconnected for inactivity\r\n');
  });

  it('creates working dialogues and backend logins', () => {
    const d = imapModule.createDialogue({ tls: true, starttls: false, requireTlsForAuth: true, limits: { maxLineBytes: 8192, maxLiteralBytes: 8192, maxBadCommands: 10, maxAuthAttempts: 3, preAuthDeadlineMs: 1, idleTimeoutMs: 1, authFailureDelayMs: 0, authFailureMaxDelayMs: 0 } });
    assert.match(String((d.start()[0] as { bytes: string }).bytes), /^\* OK \[CAPABILITY IMAP4rev1 /);
    assert.deepEqual(show(imapModule.createBackendLogin(ctx()).step({ kind: 'line', line: DOVECOT })), ['mp1 LOGIN {5+}\r\nalice {7+}\r\nsëcret\r\n']);
  });
});
