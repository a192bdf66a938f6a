// Proves local JWT validation against a JWKS file: signature, issuer, audience, expiry (fake clock), user claim, key rotation refetch.
// Must not open sockets (the JWKS URL and introspection paths are proven in test/integration/oauth-validation.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { JwtValidator } from '../../../src/auth/jwt.js';
import { isProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

const ISS = 'https://idp.example.test';
const AUD = 'mailproxy';

describe('JwtValidator (jwksFile)', () => {
  let dir: string;
  let file: string;
  let key: CryptoKey;
  let other: CryptoKey;
  let now = Date.now();
  const clock = () => now;

  const writeJwks = async (keys: Array<{ k: CryptoKey; kid: string }>) => {
    const jwks: { keys: JWK[] } = { keys: [] };
    for (const { k, kid } of keys) jwks.keys.push({ ...(await exportJWK(k)), kid, alg: 'ES256' });
    writeFileSync(file, JSON.stringify(jwks));
  };
  const sign = (k: CryptoKey, kid: string, o: { exp?: number; aud?: string; iss?: string; claims?: Record<string, unknown>; typ?: string } = {}) =>
    new SignJWT({ email: 'alice@example.test', ...o.claims })
      .setProtectedHeader({ alg: 'ES256', kid, ...(o.typ ? { typ: o.typ } : {}) })
      .setIssuer(o.iss ?? ISS).setAudience(o.aud ?? AUD)
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(o.exp ?? Math.floor(now / 1000) + 300)
      .sign(k);
  const validator = (extra: Partial<ConstructorParameters<typeof JwtValidator>[0]> = {}) => new JwtValidator(
    { jwksFile: file, jwksCacheMs: 300_000, jwksRefetchMinMs: 30_000, issuer: ISS, audience: AUD, algorithms: ['ES256'], clockToleranceSec: 30, ...extra },
    { logger: silentLogger, userClaim: 'email', timeoutMs: 1000, now: clock });

  let pub: CryptoKey;
  let otherPub: CryptoKey;
  before(async () => {
    const a = await generateKeyPair('ES256', { extractable: true });
    const b = await generateKeyPair('ES256', { extractable: true });
    key = a.privateKey; pub = a.publicKey; other = b.privateKey; otherPub = b.publicKey;
  });
  beforeEach(async () => {
    now = Date.now();
    dir = mkdtempSync(join(tmpdir(), 'mailproxy-jwt-'));
    file = join(dir, 'jwks.json');
    await writeJwks([{ k: pub, kid: 'k1' }]);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts a valid token and names the user from the claim', async () => {
    const v = await validator().validate(await sign(key, 'k1'));
    assert.equal(v.ok, true);
    assert.ok(v.ok && v.user === 'alice@example.test' && typeof v.expiresAt === 'number');
  });

  it('with type set, takes only tokens of that typ header (RFC 9068 at+jwt; media-type form too); unset, any typ', async () => {
    const strict = validator({ type: 'at+jwt' });
    assert.equal((await strict.validate(await sign(key, 'k1', { typ: 'at+jwt' }))).ok, true);
    assert.equal((await strict.validate(await sign(key, 'k1', { typ: 'application/at+jwt' }))).ok, true);
    assert.deepEqual(await strict.validate(await sign(key, 'k1', { typ: 'JWT' })), { ok: false, reason: 'type' });
    assert.deepEqual(await strict.validate(await sign(key, 'k1')), { ok: false, reason: 'type' });
    assert.equal((await validator().validate(await sign(key, 'k1', { typ: 'JWT' }))).ok, true);
  });

  it('refuses expired, wrong audience, wrong issuer, wrong signature, missing claim, garbage', async () => {
    const val = validator();
    const expired = await sign(key, 'k1', { exp: Math.floor(now / 1000) - 60 });
    assert.deepEqual(await val.validate(expired), { ok: false, reason: 'expired' });
    assert.deepEqual(await val.validate(await sign(key, 'k1', { aud: 'someone-else' })), { ok: false, reason: 'audience' });
    assert.deepEqual(await val.validate(await sign(key, 'k1', { iss: 'https://evil.example' })), { ok: false, reason: 'issuer' });
    assert.deepEqual(await val.validate(await sign(other, 'k1')), { ok: false, reason: 'signature' });
    assert.deepEqual(await val.validate(await sign(key, 'k1', { claims: { email: undefined } })), { ok: false, reason: 'no_user_claim' });
    assert.deepEqual(await val.validate('abc'), { ok: false, reason: 'malformed' });
    assert.deepEqual(await val.validate('a.b.c'), { ok: false, reason: 'malformed' });
  });

  it('expiry follows the (fake) clock with the configured tolerance', async () => {
    const val = validator();
    const token = await sign(key, 'k1', { exp: Math.floor(now / 1000) + 10 });
    assert.equal((await val.validate(token)).ok, true);
    now += 35_000; // 25 s past exp, inside the 30 s tolerance
    assert.equal((await val.validate(token)).ok, true);
    now += 10_000;
    assert.deepEqual(await val.validate(token), { ok: false, reason: 'expired' });
  });

  it('picks up a rotated key (unknown kid) by re-reading the JWKS, at most every jwksRefetchMinMs', async () => {
    const val = validator();
    const rotated = await sign(other, 'k2');
    await writeJwks([{ k: pub, kid: 'k1' }, { k: otherPub, kid: 'k2' }]);
    now += 31_000; // the constructor's read counts as the last fetch only after jwksRefetchMinMs
    assert.equal((await val.validate(rotated)).ok, true);
    const third = await generateKeyPair('ES256', { extractable: true });
    const t3 = await sign(third.privateKey, 'k3');
    await writeJwks([{ k: pub, kid: 'k1' }, { k: third.publicKey, kid: 'k3' }]);
    assert.deepEqual(await val.validate(t3), { ok: false, reason: 'unknown_key' }, 'refetch is rate-limited');
  });

  it('a JWKS file that cannot be read is a configuration error', () => {
    writeFileSync(file, '{"nokeys": true}');
    assert.throws(() => validator(), (e) => isProxyError(e) && e.code === 'CONFIG_INVALID');
  });
});
