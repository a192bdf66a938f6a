// Owns the contract between sessions and health: admit a route (or its standby, or fail fast) and report passive outcomes.
// Must not open connections; the health facade implements it, openGate is the no-health default.
import type { Route } from '../directory/backends.js';

export interface BackendGate {
  /**
   * Where a new login for `route` goes: the route itself, its standby's route while the primary is down
   * and the standby serving, or throw ProxyError BACKEND_DOWN / BACKEND_MAINTENANCE / BACKEND_SPLIT_BRAIN to fail fast.
   */
  admit(route: Route): Route;
  /**
   * Passive signal from a real connect/login outcome ('fail' only for health-relevant failures, 'hang' when the
   * backend accepted and never greeted), with the greeting identity that connection saw (split-brain detection).
   */
  report(route: Route, outcome: 'ok' | 'fail' | 'hang', identity?: string): void;
  /** Until when (ms since epoch) a login that failed to reach `route` may retry (ride-through), or null to fail now. */
  rideThroughUntil?(route: Route): number | null;
}

/** Every login is tried; nothing is recorded. */
export const openGate: BackendGate = { admit: (r) => r, report: () => undefined };
