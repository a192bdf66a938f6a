// Owns opening a backend SMTP/LMTP session ready for MAIL: greeting, EHLO/LHLO, STARTTLS, XCLIENT, AUTH, within one budget.
// Must not choose the backend or talk to the client; it reports the outcome to the health gate and returns the client or a ProxyError.
import { ProxyError, toProxyError } from '../../errors.js';
import { backendLoginSeconds } from '../../metrics.js';
import type { Route } from '../../directory/backends.js';
import type { BackendGate } from '../../health/gate.js';
import type { ClientEndpoint } from '../protocol.js';
import { SmtpBackendClient } from './backend-client.js';
import { plainAddress } from '../proxy-header.js';
import type { TokenMechanism } from '../sasl.js';

export interface OpenBackendParams {
  route: Route;
  gate: BackendGate;
  /** Name this proxy gives in EHLO/LHLO. */
  heloName: string;
  /** One budget for connect + greeting + EHLO + STARTTLS + XCLIENT + AUTH (backendLogin.backendLoginBudgetMs). */
  budgetMs: number;
  connectTimeoutMs: number;
  client: ClientEndpoint;
  /** XCLIENT attributes besides ADDR/PORT (HELO, NAME, PROTO, LOGIN); sent only when the route trusts the proxy. */
  xclient?: { HELO?: string; NAME?: string; PROTO?: string; LOGIN?: string };
  /** The client reached us over TLS (PROXY v2 SSL TLV, when the route forwards by proxy-v2). */
  clientTls?: boolean;
  /** Our connection id, passed as XCLIENT SESSION where offered (Dovecot logs it: one id across both logs). */
  sessionId: string;
  /** AUTH PLAIN as this user when the backend still offers AUTH after XCLIENT (submission). */
  credentials?: { user: string; password: string; token?: { mechanism: TokenMechanism; token: string } };
  /** Where XCLIENT would be useful but the backend does not trust us or offer it (logs only). */
  onNote?: (note: string) => void;
}

/** XCLIENT ADDR form (Postfix XCLIENT_README): IPv6 addresses get the "IPV6:" prefix. */
function xclientAddr(address: string): string {
  const bare = plainAddress(address);
  return bare.includes(':') ? `IPV6:${bare}` : bare;
}

/**
 * Connect to `route` (already admitted by the gate) and walk the login sequence. Reports
 * 'ok' / 'fail' to the gate: 'fail' only for errors whose catalogue health signal is
 * backend-failure (refused, timed out, garbage), 'ok' when the backend answered at all.
 */
export async function openBackend(p: OpenBackendParams): Promise<SmtpBackendClient> {
  const { route } = p;
  const started = Date.now();
  const left = (): number => {
    const ms = started + p.budgetMs - Date.now();
    if (ms <= 0) throw new ProxyError('BACKEND_UNAVAILABLE', `backend login budget of ${p.budgetMs} ms used up`);
    return ms;
  };
  const proxyV2 = route.trustsProxy && route.forwardClientAddress === 'proxy-v2';
  let client: SmtpBackendClient | undefined;
  try {
    client = await SmtpBackendClient.connect(route, {
      lmtp: route.protocol === 'lmtp', connectTimeoutMs: Math.min(p.connectTimeoutMs, left()), greetingTimeoutMs: left(),
      ...(proxyV2 ? { proxyFor: p.client, clientTls: p.clientTls === true } : {}),
    });
    await client.hello(p.heloName, left());
    if (route.tls === 'starttls') {
      await client.startTls(route, left());
      await client.hello(p.heloName, left());
    }
    if (route.trustsProxy && route.forwardClientAddress === 'native' && client.has('XCLIENT')) {
      const sent = await client.xclient({ ADDR: xclientAddr(p.client.address), PORT: String(p.client.port), SESSION: p.sessionId, ...p.xclient }, left());
      // XCLIENT_README: the server answers like a new connection; say EHLO/LHLO again.
      if (sent) await client.hello(p.heloName, left());
    } else if (route.trustsProxy && route.forwardClientAddress === 'native') {
      p.onNote?.('backend trusts the proxy but does not offer XCLIENT; client address not forwarded');
    }
    if (p.credentials && client.has('AUTH')) {
      const mechs = (client.capabilities.get('AUTH') ?? []).map((m) => m.toUpperCase());
      const token = p.credentials.token;
      if (token) {
        if (!mechs.includes(token.mechanism)) throw new ProxyError('BACKEND_PROTOCOL', `backend offers no AUTH ${token.mechanism} (${mechs.join(' ')})`);
        await client.authToken(token.mechanism, p.credentials.user, token.token, left());
      } else {
        if (!mechs.includes('PLAIN')) throw new ProxyError('BACKEND_PROTOCOL', `backend offers no AUTH PLAIN (${mechs.join(' ')})`);
        await client.authPlain(p.credentials.user, p.credentials.password, left());
      }
    }
    p.gate.report(route, 'ok');
    backendLoginSeconds.observe({ backend: route.backend, protocol: route.protocol, result: 'ok' }, (Date.now() - started) / 1000);
    return client;
  } catch (e) {
    client?.destroy();
    const err = toProxyError(e, 'BACKEND_UNAVAILABLE');
    p.gate.report(route, err.spec.health === 'backend-failure' ? 'fail' : 'ok');
    backendLoginSeconds.observe({ backend: route.backend, protocol: route.protocol, result: err.spec.metricLabel }, (Date.now() - started) / 1000);
    throw err;
  }
}
