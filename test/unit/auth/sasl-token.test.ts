// Proves OAUTHBEARER (RFC 7628) and XOAUTH2 decoding/encoding: authzid escapes, Bearer token syntax, malformed input refused.
// Must not do I/O.
import assert from 'node:assert/strict';
import { decodeOAuthBearer, decodeXOAuth2, encodeTokenResponse, isTokenCredentials, tokenErrorChallenge } from '../../../src/proxy/sasl.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

describe('SASL OAUTHBEARER / XOAUTH2', () => {
  it('decodes the RFC 7628 §4.1 example', () => {
    const r = decodeOAuthBearer(b64('n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01'));
    assert.deepEqual(r, { ok: true, credentials: { user: 'user@example.com', token: 'vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==', mechanism: 'OAUTHBEARER' } });
  });

  it('accepts an empty authzid and unescapes =2C / =3D', () => {
    const r = decodeOAuthBearer(b64('n,,\x01auth=Bearer abc\x01\x01'));
    assert.ok(r.ok && r.credentials.user === '');
    const e = decodeOAuthBearer(b64('n,a=a=2Cb=3Dc,\x01auth=Bearer abc\x01\x01'));
    assert.ok(e.ok && e.credentials.user === 'a,b=c');
  });

  it('refuses malformed responses', () => {
    for (const text of [
      'n,a=u,\x01auth=Bearer abc\x01',        // missing final kvsep
      'p=tls-unique,,\x01auth=Bearer abc\x01\x01', // channel binding
      'n,a=u,\x01auth=Basic abc\x01\x01',      // not Bearer
      'n,a=u,\x01host=x\x01\x01',             // no auth
      'n,a=u=ZZ,\x01auth=Bearer abc\x01\x01',  // bad escape
      'n,a=u,\x01auth=Bearer a b\x01\x01',      // token with space
      '\x01',                                  // the error-ack, not a login
    ]) assert.deepEqual(decodeOAuthBearer(b64(text)), { ok: false, reason: 'malformed' }, JSON.stringify(text));
    assert.deepEqual(decodeOAuthBearer('not base64!'), { ok: false, reason: 'base64' });
  });

  it('decodes XOAUTH2 and refuses variants', () => {
    const r = decodeXOAuth2(b64('user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01'));
    assert.deepEqual(r, { ok: true, credentials: { user: 'someuser@example.com', token: 'ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg', mechanism: 'XOAUTH2' } });
    assert.equal(decodeXOAuth2(b64('user=x\x01auth=Bearer \x01\x01')).ok, false);
    assert.equal(decodeXOAuth2(b64('user=x\x01auth=Bearer t\x01')).ok, false);
    assert.equal(decodeXOAuth2(b64('auth=Bearer t\x01\x01')).ok, false);
  });

  it('encodes what it decodes (backend login)', () => {
    const ob = decodeOAuthBearer(encodeTokenResponse('OAUTHBEARER', 'we,ird=user', 'tok.en-_~+/='));
    assert.ok(ob.ok && ob.credentials.user === 'we,ird=user' && ob.credentials.token === 'tok.en-_~+/=');
    const xo = decodeXOAuth2(encodeTokenResponse('XOAUTH2', 'alice', 'abc'));
    assert.ok(xo.ok && xo.credentials.user === 'alice' && xo.credentials.token === 'abc');
    assert.ok(isTokenCredentials({ user: '', token: 't', mechanism: 'XOAUTH2' }));
    assert.ok(!isTokenCredentials({ user: 'u', password: 'p', mechanism: 'PLAIN' }));
  });

  it('builds the RFC 7628 §3.2.2 error challenge', () => {
    const json = JSON.parse(Buffer.from(tokenErrorChallenge({ status: 'invalid_token', scope: 'email', openidConfiguration: 'https://idp/.well-known/openid-configuration' }), 'base64').toString());
    assert.deepEqual(json, { status: 'invalid_token', scope: 'email', 'openid-configuration': 'https://idp/.well-known/openid-configuration' });
  });
});
