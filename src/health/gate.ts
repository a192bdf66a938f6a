// Owns the contract between sessions and health: admit a route (or its standby, or fail fast) and report passive outcomes.
// Must not open connections; the health facade implements it, openGate is the no-health default.
import type { Route } from '../directory/backends.js';

export interface BackendGate {
  /**
   * Where a new login for `route` goes: the route itself, its standby's route while the primary is down
   * and the standby serving, or throw ProxyError BACKEND_DOWN / BACKEND_MAINTENANCE to fail fast.
   */
  admit(route: Route): Route;
  /** Passive signal from a real connect/login outcome ('fail' only for health-relevant failures). */
  report(route: Route, outcome: 'ok' | 'fail'): void;
}

/** Every login is tried; nothing is recorded. */
export const openGate: BackendGate = { admit: (r) => r, report: () => undefined };
