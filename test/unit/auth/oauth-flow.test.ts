// Proves the OAuth pieces around the validators: OAuthDirectory (token → account, claimed user must match, passwords pass through), the IMAP and
// POP3 dialogues (mechanisms offered only when configured, RFC 7628 error challenge, temporary errors) and the oauth config section.
// Must not do I/O (the validators are replaced by a fake).
import assert from 'node:assert/strict';
import { parseConfig, ConfigError } from '../../../src/config/load.js';
import type { TokenValidator, TokenVerdict } from '../../../src/auth/token-validator.js';
import type { Account, AuthResult, Directory } from '../../../src/directory/directory.js';
import { OAuthDirectory } from '../../../src/directory/oauth.js';
import { ProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import type { ClientAction } from '../../../src/proxy/protocol.js';
import { createImapDialogue } from '../../../src/proxy/imap/dialogue.js';
import { createPop3Dialogue } from '../../../src/proxy/pop3/dialogue.js';
import { encodeTokenResponse, type Credentials } from '../../../src/proxy/sasl.js';
import { LIMITS } from '../imap/helpers.js';

const ALICE: Account = { login: 'alice', mail: 'alice@example.test', host: 'backend-a' };
const BOB: Account = { login: 'bob', mail: 'bob@example.test', host: 'backend-b' };

class Inner implements Directory {
  passwords: Credentials[] = [];
  async authenticate(c: Credentials): Promise<AuthResult> { this.passwords.push(c); return { ok: false }; }
  async lookup(name: string): Promise<Account | null> { return [ALICE, BOB].find((a) => a.login === name || a.mail === name) ?? null; }
  async lookupRecipient(): Promise<Account | null> { return null; }
  async close(): Promise<void> {}
}
const validator = (verdicts: Record<string, TokenVerdict | 'down'>): TokenValidator => ({
  async validate(token) {
    const v = verdicts[token];
    if (v === 'down') throw new ProxyError('IDP_UNAVAILABLE', 'test');
    return v ?? { ok: false, reason: 'signature' };
  },
});

describe('OAuthDirectory', () => {
  const verdicts: Record<string, TokenVerdict | 'down'> = { good: { ok: true, user: 'alice@example.test' }, nouser: { ok: true, user: 'zed@example.test' }, down: 'down' };
  const dir = (inner = new Inner()) => new OAuthDirectory(inner, validator(verdicts), silentLogger);

  it('names the account from the token; the client may claim the same account by any of its names', async () => {
    for (const user of ['', 'alice', 'alice@example.test']) {
      assert.deepEqual(await dir().authenticate({ user, token: 'good', mechanism: 'OAUTHBEARER' }), { ok: true, account: ALICE }, user);
    }
  });

  it('refuses a token for another user, an unknown account and an invalid token; provider trouble is thrown', async () => {
    assert.deepEqual(await dir().authenticate({ user: 'bob', token: 'good', mechanism: 'XOAUTH2' }), { ok: false });
    assert.deepEqual(await dir().authenticate({ user: '', token: 'nouser', mechanism: 'XOAUTH2' }), { ok: false });
    assert.deepEqual(await dir().authenticate({ user: '', token: 'forged', mechanism: 'OAUTHBEARER' }), { ok: false });
    await assert.rejects(dir().authenticate({ user: '', token: 'down', mechanism: 'OAUTHBEARER' }), (e) => e instanceof ProxyError && e.code === 'IDP_UNAVAILABLE');
  });

  it('passes route invalidation and reload to the inner directory (with oauth on, POST /routes/invalidate dropped nothing)', async () => {
    const inner = Object.assign(new Inner(), { dropped: [] as string[], reloads: 0 });
    Object.assign(inner, { invalidate: (u: string) => { inner.dropped.push(u); return 2; }, reload: async () => { inner.reloads++; } });
    const d = dir(inner);
    assert.equal(d.invalidate('alice'), 2);
    assert.deepEqual(inner.dropped, ['alice']);
    await d.reload();
    assert.equal(inner.reloads, 1);
    assert.equal(dir().invalidate('alice'), 0, 'an inner directory without a cache drops nothing');
  });

  it('passes password logins to the inner directory untouched', async () => {
    const inner = new Inner();
    await dir(inner).authenticate({ user: 'alice', password: 'pw', mechanism: 'PLAIN' });
    assert.deepEqual(inner.passwords, [{ user: 'alice', password: 'pw', mechanism: 'PLAIN' }]);
  });
});

const text = (a: ClientAction[]) => a.map((x) => (x.kind === 'send' ? x.bytes.toString() : '')).join('');
const logins = (a: ClientAction[]) => a.filter((x) => x.kind === 'login');
const opts = { tls: true, starttls: false, requireTlsForAuth: true, limits: LIMITS, greeting: 'hi' };

describe('OAuth in the IMAP and POP3 dialogues', () => {
  it('IMAP: AUTH=OAUTHBEARER/XOAUTH2 only when configured; continuation form; refused token → challenge, then NO; provider down → NO [UNAVAILABLE]', () => {
    assert.doesNotMatch(text(createImapDialogue(opts).start()), /OAUTH/);
    const d = createImapDialogue({ ...opts, tokenMechanisms: ['OAUTHBEARER', 'XOAUTH2'], oauthChallenge: { openidConfiguration: 'https://idp/.well-known/openid-configuration' } });
    assert.match(text(d.start()), /AUTH=PLAIN AUTH=LOGIN AUTH=OAUTHBEARER AUTH=XOAUTH2/);
    const feed = (s: string) => d.step({ kind: 'data', bytes: Buffer.from(s) });
    assert.equal(text(feed('a AUTHENTICATE OAUTHBEARER\r\n')), '+ \r\n');
    assert.deepEqual(logins(feed(`${encodeTokenResponse('OAUTHBEARER', 'alice', 'T1')}\r\n`)), [{ kind: 'login', credentials: { user: 'alice', token: 'T1', mechanism: 'OAUTHBEARER' } }]);
    const ch = text(d.step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') }));
    assert.deepEqual(JSON.parse(Buffer.from(ch.slice(2), 'base64').toString()), { status: 'invalid_token', 'openid-configuration': 'https://idp/.well-known/openid-configuration' });
    assert.equal(text(feed('AQ==\r\n')), 'a NO [AUTHENTICATIONFAILED] Authentication failed\r\n');
    feed(`b AUTHENTICATE XOAUTH2 ${encodeTokenResponse('XOAUTH2', 'alice', 'T2')}\r\n`);
    assert.equal(text(d.step({ kind: 'login-failed', error: new ProxyError('IDP_UNAVAILABLE') })), 'b NO [UNAVAILABLE] Temporary failure, please try again later\r\n');
    assert.equal(text(feed('c AUTHENTICATE OAUTHBEARER bm90IGEgdG9rZW4=\r\n')), 'c NO [AUTHENTICATIONFAILED] Invalid SASL response\r\n');
  });

  it('IMAP: without oauth the mechanisms are refused', () => {
    const d = createImapDialogue(opts);
    d.start();
    assert.equal(text(d.step({ kind: 'data', bytes: Buffer.from(`a AUTHENTICATE XOAUTH2 ${encodeTokenResponse('XOAUTH2', 'a', 't')}\r\n`) })), 'a NO Unsupported authentication mechanism\r\n');
  });

  it('POP3: SASL list and AUTH OAUTHBEARER; refused token → "+ challenge", then -ERR [AUTH]', () => {
    const d = createPop3Dialogue({ ...opts, tokenMechanisms: ['OAUTHBEARER'] });
    d.start();
    const feed = (s: string) => d.step({ kind: 'data', bytes: Buffer.from(s) });
    assert.match(text(feed('CAPA\r\n')), /^SASL PLAIN LOGIN OAUTHBEARER\r$/m);
    assert.match(text(feed('AUTH\r\n')), /^OAUTHBEARER\r$/m);
    assert.equal(text(feed('AUTH XOAUTH2\r\n')), '-ERR Unsupported authentication mechanism\r\n');
    assert.deepEqual(logins(feed(`AUTH OAUTHBEARER ${encodeTokenResponse('OAUTHBEARER', '', 'T')}\r\n`)), [{ kind: 'login', credentials: { user: '', token: 'T', mechanism: 'OAUTHBEARER' } }]);
    assert.match(text(d.step({ kind: 'login-failed', error: new ProxyError('AUTH_FAILED') })), /^\+ eyJ/);
    assert.equal(text(feed('AQ==\r\n')), '-ERR [AUTH] Authentication failed\r\n');
  });
});

describe('oauth config section', () => {
  const base = 'listeners:\n  - { protocol: imap, port: 143, tls: none }\ndirectory: { type: static, static: { file: users.yaml } }\n';
  const fails = (yaml: string): string[] => {
    try { parseConfig(base + yaml, 't.yaml'); } catch (e) { assert.ok(e instanceof ConfigError); return e.problems; }
    return assert.fail('expected a ConfigError');
  };

  it('defaults: both mechanisms, email claim, token backend login', () => {
    const c = parseConfig(`${base}oauth: { jwt: { jwksUrl: 'https://idp/jwks', issuer: i, audience: a } }\n`, 't.yaml');
    assert.deepEqual(c.oauth?.mechanisms, ['OAUTHBEARER', 'XOAUTH2']);
    assert.equal(c.oauth?.userClaim, 'email');
    assert.equal(c.oauth?.backendLogin, 'token');
    assert.equal(parseConfig(base, 't.yaml').oauth, undefined);
  });

  it('needs exactly one validation method, https URLs, a client secret, and the master user for master logins', () => {
    assert.match(fails('oauth: {}\n').join(' '), /exactly one of jwt or introspection/);
    assert.match(fails("oauth: { jwt: { jwksUrl: 'http://idp/jwks', issuer: i, audience: a } }\n").join(' '), /https/);
    assert.match(fails('oauth: { jwt: { issuer: i, audience: a } }\n').join(' '), /exactly one of jwksFile or jwksUrl/);
    assert.match(fails("oauth: { introspection: { url: 'https://idp/i', clientId: c } }\n").join(' '), /clientSecret/);
    assert.match(fails("oauth: { backendLogin: master, introspection: { url: 'https://idp/i', clientId: c, clientSecret: s } }\n").join(' '), /masterUser/);
  });
});
