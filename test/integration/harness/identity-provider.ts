// Owns the test world's OAuth 2.0 identity provider: an HTTPS server on loopback serving a JWKS and RFC 7662 introspection, and the tokens it signs.
// Must not know about the proxy or Dovecot beyond the URLs it serves; tokens are signed with its own key (a second key makes "wrong signature" tokens).
import { createServer, type Server } from 'node:https';
import { readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet, type JWK, type CryptoKey } from 'jose';

export const IDP_ISSUER = 'https://idp.example.test';
export const IDP_AUDIENCE = 'mailproxy';
export const IDP_CLIENT_ID = 'mailproxy-introspect';
export const IDP_CLIENT_SECRET = 'introspect-secret';

export interface TokenOptions {
  /** Default: the user's mail address in `email`, uid in `username`. */
  claims?: Record<string, unknown>;
  /** Seconds from now; negative = already expired. Default 600. */
  expiresIn?: number;
  audience?: string;
  issuer?: string;
  /** Sign with a key that is not in the JWKS (wrong signature; same kid). */
  foreignKey?: boolean;
}

export interface IdentityProvider {
  /** https://127.0.0.1:PORT */
  url: string;
  jwksUrl: string;
  introspectionUrl: string;
  /** The JWKS written to a file too (for `jwksFile`). */
  jwksFile: string;
  /** Number of introspection and JWKS requests answered so far. */
  counts: { introspection: number; jwks: number };
  /** `down`: the server answers 503 to everything (provider trouble). */
  setDown(down: boolean): void;
  token(uid: string, mail: string, opts?: TokenOptions): Promise<string>;
  close(): Promise<void>;
}

const KID = 'test-key-1';

export async function startIdentityProvider(o: { dir: string; certPath: string; keyPath: string }): Promise<IdentityProvider> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const foreign = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: KID, alg: 'RS256', use: 'sig' };
  const jwks = { keys: [jwk] };
  const keySet = createLocalJWKSet(jwks);
  const jwksFile = join(o.dir, 'idp-jwks.json');
  await writeFile(jwksFile, JSON.stringify(jwks));
  const counts = { introspection: 0, jwks: 0 };
  let down = false;
  const basic = `Basic ${Buffer.from(`${IDP_CLIENT_ID}:${IDP_CLIENT_SECRET}`).toString('base64')}`;

  const introspect = async (token: string): Promise<Record<string, unknown>> => {
    try {
      const { payload } = await jwtVerify(token, keySet, { issuer: IDP_ISSUER });
      return { active: true, token_type: 'Bearer', ...payload };
    } catch {
      return { active: false };
    }
  };

  const server: Server = createServer({ cert: await readFile(o.certPath), key: await readFile(o.keyPath) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const reply = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (down) return reply(503, { error: 'temporarily_unavailable' });
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && path === '/jwks.json') {
        counts.jwks++;
        return reply(200, jwks);
      }
      if (req.method === 'POST' && path === '/introspect') {
        counts.introspection++;
        // RFC 7662 §2.1: the protected resource authenticates; Dovecot may also put the client in the URL's userinfo (same header).
        if (req.headers.authorization !== basic) return reply(401, { error: 'invalid_client' });
        const token = new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('token') ?? '';
        void introspect(token).then((v) => reply(200, v));
        return;
      }
      reply(404, { error: 'not_found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    jwksUrl: `${url}/jwks.json`,
    introspectionUrl: `${url}/introspect`,
    jwksFile,
    counts,
    setDown: (d) => { down = d; },
    async token(uid, mail, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const key: CryptoKey = opts.foreignKey ? foreign.privateKey : privateKey;
      return new SignJWT({ email: mail, username: uid, scope: 'email mail', ...opts.claims })
        .setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'at+jwt' })
        .setIssuer(opts.issuer ?? IDP_ISSUER)
        .setAudience(opts.audience ?? IDP_AUDIENCE)
        .setSubject(uid)
        .setIssuedAt(now - 5)
        .setExpirationTime(now + (opts.expiresIn ?? 600))
        .sign(key);
    },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
