// Owns upgrading sockets to TLS: server side for STARTTLS/implicit client connections, client side towards backends.
// Must not know protocols; callers decide when to upgrade and what to do with bytes sent before the handshake.
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import type { ServerTlsOptions } from '../tls/certificates.js';
import { backendTlsOptions } from '../core/tls.js';
import type { BackendTlsView } from '../core/types.js';
import type { Socket } from 'node:net';
import { ProxyError, toProxyError } from '../errors.js';

/** Wrap an accepted socket as a TLS server (default context, SNI, ALPN check) and wait for the handshake (bounded by timeoutMs). */
export function upgradeServer(socket: Socket, options: ServerTlsOptions, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tls = new TLSSocket(socket, { isServer: true, ...options });
    const timer = setTimeout(() => fail(new Error('TLS handshake timeout')), timeoutMs);
    const fail = (e: Error) => { clearTimeout(timer); tls.destroy(); socket.destroy(); reject(toProxyError(e, 'PREAUTH_TIMEOUT')); };
    tls.once('secure', () => { clearTimeout(timer); tls.off('error', fail); resolve(tls); });
    tls.once('error', fail);
    tls.once('close', () => fail(new Error('closed during TLS handshake')));
  });
}

/** TLS client handshake over an existing connection to a backend; failures are BACKEND_UNAVAILABLE. */
export function upgradeClient(socket: Socket, route: BackendTlsView, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({ socket, ...backendTlsOptions(route) });
    const timer = setTimeout(() => fail(new Error('backend TLS handshake timeout')), timeoutMs);
    const fail = (e: Error) => { clearTimeout(timer); tls.destroy(); reject(new ProxyError('BACKEND_UNAVAILABLE', `TLS: ${e.message}`, { cause: e })); };
    tls.once('secureConnect', () => { clearTimeout(timer); tls.off('error', fail); resolve(tls); });
    tls.once('error', fail);
  });
}
