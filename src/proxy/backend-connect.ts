// Owns opening a connection to a backend endpoint: TCP connect (through the injected Dial) under a deadline, optional PROXY v2 header, implicit TLS.
// Must not speak any mail protocol; net/tls errors are wrapped here into ProxyError BACKEND_UNAVAILABLE (LOCAL_RESOURCES when this host is out of descriptors or ports).
import { connect, isIP, type Socket } from 'node:net';
import { isLocalResourceError, ProxyError } from '../errors.js';
import type { Route } from '../directory/backends.js';
import { upgradeClient } from './starttls.js';
import { encodeProxyV2 } from '../core/proxy-header.js';
import { connectBulk } from './bulk-read.js';
import { backendConnectSeconds } from '../metrics.js';
import type { Clock } from '../core/clock.js';
import type { ClientEndpoint } from '../core/types.js';
import type { BackendGuard } from './backend-guard.js';

/**
 * Opens a TCP connection; it emits 'connect' or 'error' like net.connect (tests pass in-memory sockets). `plain`: no TLS
 * will ever run over it, so it may read in bulk (bulk-read.ts).
 */
export type Dial = (target: { host: string; port: number; /** Local address to bind (backend sourceAddresses). */ localAddress?: string; plain?: boolean }) => Socket;

export const netDial: Dial = ({ host, port, localAddress, plain }) => (plain === true
  ? connectBulk(host, port, localAddress)
  : connect({ host, port, noDelay: true, ...(localAddress ? { localAddress } : {}) }));

export interface ConnectOptions {
  timeoutMs: number;
  dial: Dial;
  clock: Clock;
  /** Send a PROXY v2 header carrying this client (route.forwardClientAddress === 'proxy-v2' and trusted). */
  proxyFor?: ClientEndpoint;
  /** With proxyFor: the client reached the proxy over TLS (PROXY v2 SSL TLV). */
  clientTls?: boolean;
  /** Loop protection and sourceAddresses of this instance. */
  guard?: BackendGuard;
}

/** Shared no-op (a closure here would keep this call's route and options alive with the socket). */
const ignoreError = (): void => undefined;

export async function connectBackend(route: Route, opts: ConnectOptions): Promise<Socket> {
  const { clock } = opts;
  const started = clock.now();
  const guard = opts.guard;
  guard?.checkRoute(route);
  const lease = guard?.lease(route);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = opts.dial({ host: route.host, port: route.port, ...(lease ? { localAddress: lease.address } : {}), ...(route.tls === 'none' ? { plain: true } : {}) });
    if (lease) s.once('close', lease.release);
    const timer = clock.setTimeout(() => { s.destroy(); reject(new ProxyError('BACKEND_UNAVAILABLE', `connect to ${route.host}:${route.port} timed out after ${opts.timeoutMs} ms`)); }, opts.timeoutMs);
    // Named handler removed with off(): removeAllListeners() deletes the key and turns the socket's listener table into a
    // slow dictionary (≈ 450 bytes more per held session); off() keeps its shape.
    const onConnectError = (e: NodeJS.ErrnoException) => { clock.clearTimeout(timer); reject(new ProxyError(isLocalResourceError(e) ? 'LOCAL_RESOURCES' : 'BACKEND_UNAVAILABLE', `connect to ${route.host}:${route.port}${lease ? ` from ${lease.address}` : ''}: ${e.code ?? e.message}`, { cause: e })); };
    s.once('connect', () => {
      clock.clearTimeout(timer);
      s.off('error', onConnectError);
      // A name that led back to one of our own listeners: refuse before it speaks. An IP-literal route was checked by
      // checkRoute already and is the peer itself (no getpeername syscall for it).
      if (guard && !isIP(route.host) && guard.isOwn(s.remoteAddress, s.remotePort)) {
        s.destroy();
        reject(new ProxyError('ROUTE_LOOP', `backend ${route.backend} (${route.host}:${route.port}) connected to this proxy's own listener ${s.remoteAddress}:${s.remotePort}`));
        return;
      }
      resolve(s);
    });
    s.once('error', onConnectError);
  });
  socket.on('error', ignoreError); // replaced by the session's handler; prevents an unhandled error in between
  if (opts.proxyFor) {
    socket.write(encodeProxyV2({
      source: { address: opts.proxyFor.address, port: opts.proxyFor.port },
      destination: { address: opts.proxyFor.localAddress, port: opts.proxyFor.localPort },
    }, { ssl: opts.clientTls === true }));
  }
  let out: Socket = socket;
  if (route.tls === 'implicit') {
    out = await upgradeClient(socket, route, opts.timeoutMs);
    out.on('error', ignoreError);
  }
  backendConnectSeconds.observe({ backend: route.backend, protocol: route.protocol }, (clock.now() - started) / 1000);
  return out;
}
