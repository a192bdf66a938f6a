// Owns the value types shared by proxy/, directory/, health/ and ops/: credentials, the client's address, TLS towards a server.
// Must not import from any other src/ folder nor do I/O; plain data shapes (and the guard telling credential kinds apart) only.

/** A user name and password (LOGIN, PLAIN, POP3 USER/PASS). */
export interface PasswordCredentials {
  /** Authentication identity the client typed. */
  user: string;
  password: string;
  /** How the client authenticated, for logs and metrics (never the payload). */
  mechanism: 'LOGIN' | 'PLAIN' | 'USER';
}

export type TokenMechanism = 'OAUTHBEARER' | 'XOAUTH2';

/** An OAuth 2.0 bearer token (RFC 6750); the user is learnt from the token, `user` is what the client claimed (may be empty). */
export interface TokenCredentials {
  /** OAUTHBEARER authzid or XOAUTH2 `user=`; '' when the client named nobody. */
  user: string;
  token: string;
  mechanism: TokenMechanism;
}

/** Every login method ends as one of these; `mechanism` tells the kind apart. */
export type Credentials = PasswordCredentials | TokenCredentials;

export function isTokenCredentials(c: Credentials): c is TokenCredentials {
  return c.mechanism === 'OAUTHBEARER' || c.mechanism === 'XOAUTH2';
}

/** Who the client is, as the backend should hear it. */
export interface ClientEndpoint {
  address: string;
  port: number;
  localAddress: string;
  localPort: number;
}

/** What a route (backend, LDAP server) says about TLS towards it. */
export interface BackendTlsView { servername: string; tlsVerify: boolean; tlsCa?: string }
