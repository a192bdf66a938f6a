// Owns routing: host attribute value + protocol → concrete backend endpoint (pure, from config).
// Must not consult health state or open connections; the health gate decides go/fail-fast afterwards.
import { ProxyError } from '../errors.js';
import type { BackendConfig, Config, TlsMode } from '../config/schema.js';

export type RouteProtocol = 'imap' | 'pop3' | 'submission' | 'lmtp' | 'smtp' | 'sieve';

export interface Route {
  /** Backend name (table key, or the host attribute value used as a host name). */
  backend: string;
  protocol: RouteProtocol;
  host: string;
  port: number;
  tls: TlsMode;
  tlsVerify: boolean;
  /** PEM CA bundle to verify the backend with (tlsCaFile); system CAs when unset. */
  tlsCa?: string;
  servername: string;
  trustsProxy: boolean;
  forwardClientAddress: 'native' | 'proxy-v2' | 'none';
  standby?: string;
  /** Local addresses to bind connections to this backend to (least used first). */
  sourceAddresses?: readonly string[];
}

export const DEFAULT_PORTS: Readonly<Record<RouteProtocol, number>> = { imap: 143, pop3: 110, submission: 587, lmtp: 24, smtp: 25, sieve: 4190 };

/** Route for a backend name from the table (or a bare host name not in it). */
export function routeForBackend(config: Pick<Config, 'backends'>, name: string, protocol: RouteProtocol): Route {
  const b: BackendConfig | undefined = config.backends[name];
  if (!b) {
    return { backend: name, protocol, host: name, port: DEFAULT_PORTS[protocol], tls: 'none', tlsVerify: true, servername: name, trustsProxy: false, forwardClientAddress: 'none' };
  }
  const ep = b[protocol];
  return {
    backend: name,
    protocol,
    host: b.host,
    port: ep?.port ?? DEFAULT_PORTS[protocol],
    tls: ep?.tls ?? 'none',
    tlsVerify: b.tlsVerify,
    servername: b.tlsServerName ?? b.host,
    trustsProxy: b.trustsProxy,
    forwardClientAddress: b.forwardClientAddress,
    ...(b.standby ? { standby: b.standby } : {}),
    ...(b.tlsCa ? { tlsCa: b.tlsCa } : {}),
    ...(b.sourceAddresses.length ? { sourceAddresses: b.sourceAddresses } : {}),
  };
}

/** Route for an account's host attribute; no attribute and no default backend is a temporary failure. */
export function resolveRoute(config: Pick<Config, 'backends' | 'routing'>, host: string | null, protocol: RouteProtocol): Route {
  const name = host?.trim() || config.routing.defaultBackend;
  if (!name) throw new ProxyError('NO_ROUTE', 'account has no host attribute and no default backend');
  if (!/^[A-Za-z0-9._:-]+$/.test(name)) throw new ProxyError('NO_ROUTE', `host attribute is not a valid host name`);
  return routeForBackend(config, name, protocol);
}
