// Owns the optional deep IMAP probe: log in as the configured probe account with imapflow and SELECT INBOX.
// Must not be used for anything but probing; imapflow is loaded lazily so it is only needed when health.deepProbe is set.
import net from 'node:net';
import { backendTlsOptions } from '../core/tls.js';
import type { HealthConfig } from '../config/schema.js';
import type { Route } from '../directory/backends.js';
import { ProxyError, toProxyError } from '../errors.js';
import type { DeepProbe } from './probe.js';

/** A DeepProbe for the configured account, or undefined when health.deepProbe is not set. */
export function imapDeepProbe(cfg: HealthConfig['deepProbe']): DeepProbe | undefined {
  if (!cfg) return undefined;
  const { user } = cfg;
  const pass = cfg.password ?? '';
  return async (route: Route, timeoutMs: number): Promise<void> => {
    if (!pass) throw new ProxyError('CONFIG_INVALID', 'health.deepProbe has no password');
    const { ImapFlow } = await import('imapflow');
    const client = new ImapFlow({
      host: route.host,
      port: route.port,
      secure: route.tls === 'implicit',
      doSTARTTLS: route.tls === 'starttls' ? true : route.tls === 'none' ? false : undefined,
      servername: net.isIP(route.servername) ? undefined : route.servername,
      tls: backendTlsOptions(route),
      auth: { user, pass },
      logger: false,
      disableAutoIdle: true,
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    });
    client.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ProxyError('BACKEND_UNAVAILABLE', `deep probe exceeded ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([
        (async () => {
          await client.connect();
          await client.mailboxOpen('INBOX', { readOnly: true });
          await client.logout();
        })(),
        deadline,
      ]);
    } catch (e) {
      throw toProxyError(e, 'BACKEND_UNAVAILABLE');
    } finally {
      clearTimeout(timer);
      client.close();
    }
  };
}
