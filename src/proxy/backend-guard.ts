// Owns what every backend connection of an instance respects: never one of our own listeners, and the sourceAddresses to bind.
// Must not connect or speak protocols; connectBackend asks it, Instance builds it from the bound listeners.
import { isIP } from 'node:net';
import { ProxyError } from '../errors.js';
import type { Route } from '../directory/backends.js';
import { isOwnListener, localAddresses, plainIp, type OwnListener } from './loop-guard.js';
import { SourceAddressPicker, type SourceLease } from './source-address.js';

export interface BackendGuard {
  /** Before connecting: an IP-literal route to one of our own listeners throws ROUTE_LOOP. */
  checkRoute(route: Pick<Route, 'host' | 'port' | 'backend'>): void;
  /** After connecting: is the peer (resolved address) one of our own listeners? */
  isOwn(address: string | undefined, port: number | undefined): boolean;
  /** The local address to bind to (backend sourceAddresses); release it when the connection closes. */
  lease(route: Pick<Route, 'host' | 'port' | 'sourceAddresses'>): SourceLease | undefined;
  /** Interfaces may change between reloads. */
  refresh(): void;
}

/** `selfAddresses`: addresses that lead into the tier on any port (loopProtection.selfAddresses, e.g. the balancer's VIP). */
export function createBackendGuard(listeners: () => readonly OwnListener[], selfAddresses: () => readonly string[] = () => [], onInterfacesError?: (reason: string) => void): BackendGuard {
  const localAddressesNow = () => localAddresses(onInterfacesError);
  let local = localAddressesNow();
  const picker = new SourceAddressPicker();
  const isOwn = (address: string | undefined, port: number | undefined) => address !== undefined && port !== undefined
    && (isOwnListener(address, port, listeners(), local) || selfAddresses().some((a) => plainIp(a) === plainIp(address)));
  return {
    checkRoute(route) {
      if (isIP(route.host) && isOwn(route.host, route.port)) {
        throw new ProxyError('ROUTE_LOOP', `backend ${route.backend} (${route.host}:${route.port}) is this proxy's own listener or a selfAddress`);
      }
    },
    isOwn,
    lease(route) {
      return route.sourceAddresses?.length ? picker.pick(`${route.host}:${route.port}`, route.sourceAddresses) : undefined;
    },
    refresh() { local = localAddressesNow(); },
  };
}
