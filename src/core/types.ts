// Owns the value types shared by proxy/, directory/, health/ and ops/: credentials, the client's address, TLS towards a server.
// Must not import from any other src/ folder nor do I/O; plain data shapes only.

export interface Credentials {
  /** Authentication identity the client typed. */
  user: string;
  password: string;
  /** How the client authenticated, for logs and metrics (never the payload). */
  mechanism: 'LOGIN' | 'PLAIN' | 'USER';
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
