// Owns the TLS client options towards a server we connect to (backend, LDAP, probe): certificate check against servername, CA, SNI.
// Must not open connections; callers pass the options to node:tls.
import { checkServerIdentity, type ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import type { BackendTlsView } from './types.js';

/**
 * TLS client options towards a backend: the certificate is checked against `servername` (tlsServerName, default the
 * host) with the configured CA, whether we dial the host directly or wrap an existing socket; SNI only for names
 * (RFC 6066 §3 forbids IP literals there).
 */
export function backendTlsOptions(route: BackendTlsView): ConnectionOptions {
  const name = route.servername;
  return {
    ...(isIP(name) ? {} : { servername: name }),
    rejectUnauthorized: route.tlsVerify,
    ...(route.tlsCa ? { ca: route.tlsCa } : {}),
    minVersion: 'TLSv1.2',
    checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
  };
}
