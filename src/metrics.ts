// Owns the one Prometheus registry (prefix mailproxy_) and every metric the proxy exports.
// Must not carry per-user labels or do I/O; the admin HTTP server exposes it, workers' values are aggregated by the primary.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
let defaultsCollected = false;

/**
 * The event-loop delay histogram's sampling timer, ms. prom-client's default (10 ms) woke an idle proxy 100 times a
 * second (2.6 % of a core doing nothing); at 100 ms a loop blocked for longer than that is still seen in the
 * percentiles, and `mailproxy_nodejs_eventloop_lag_seconds` is measured at every scrape regardless.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** Process metrics (CPU, memory, fds, event loop lag); called once per process that exports metrics. */
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ register: registry, prefix: 'mailproxy_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
}

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const connectionsTotal = new Counter({ name: 'mailproxy_connections_total', help: 'Client connections accepted', labelNames: ['protocol'], registers: [registry] });
export const connectionsRefusedTotal = new Counter({ name: 'mailproxy_connections_refused_total', help: 'Client connections refused by a listener connection limit', labelNames: ['protocol', 'reason'], registers: [registry] });
export const sessionsActive = new Gauge({ name: 'mailproxy_sessions_active', help: 'Client sessions open now, by phase (prelogin, login, relay)', labelNames: ['protocol', 'phase'], registers: [registry] });
export const loginsTotal = new Counter({ name: 'mailproxy_logins_total', help: 'Login attempts by result (ok or an error catalogue label)', labelNames: ['protocol', 'result'], registers: [registry] });
export const disconnectsTotal = new Counter({ name: 'mailproxy_disconnects_total', help: 'Sessions ended, by reason', labelNames: ['protocol', 'reason'], registers: [registry] });
/** Relays add their byte counts in batches (proxy/relay.ts); the flush they register runs before every read of the metric. */
let relayBytesFlush: (() => void) | undefined;
export function onRelayBytesCollect(flush: () => void): void { relayBytesFlush = flush; }
export const relayBytesTotal = new Counter({ name: 'mailproxy_relay_bytes_total', help: 'Bytes relayed after login', labelNames: ['protocol', 'direction'], registers: [registry], collect() { relayBytesFlush?.(); } });
export const directoryRequestSeconds = new Histogram({ name: 'mailproxy_directory_request_seconds', help: 'Directory request latency', labelNames: ['operation', 'result'], buckets: LATENCY_BUCKETS, registers: [registry] });
export const directoryCacheTotal = new Counter({ name: 'mailproxy_directory_cache_total', help: 'Directory cache lookups by result (hit, miss, stale, negative)', labelNames: ['result'], registers: [registry] });
export const backendConnectSeconds = new Histogram({ name: 'mailproxy_backend_connect_seconds', help: 'Backend TCP/TLS connect latency', labelNames: ['backend', 'protocol'], buckets: LATENCY_BUCKETS, registers: [registry] });
export const backendLoginSeconds = new Histogram({ name: 'mailproxy_backend_login_seconds', help: 'Backend login dialogue latency (connect to logged in)', labelNames: ['backend', 'protocol', 'result'], buckets: LATENCY_BUCKETS, registers: [registry] });
export const backendUp = new Gauge({ name: 'mailproxy_backend_up', help: '1 when the backend is up (or unknown), 0 when suspect-less down or in maintenance', labelNames: ['backend', 'protocol'], registers: [registry] });
export const backendStateTransitionsTotal = new Counter({ name: 'mailproxy_backend_state_transitions_total', help: 'Backend health state changes', labelNames: ['backend', 'from', 'to'], registers: [registry] });
export const backendFlapping = new Gauge({ name: 'mailproxy_backend_flapping', help: '1 while the backend changes state too often and its hooks are paused (health.flapDetection)', labelNames: ['backend'], registers: [registry], aggregator: 'max' });
export const backendIdentityChangesTotal = new Counter({ name: 'mailproxy_backend_identity_changes_total', help: 'Backend greeting identity changes seen by probes (VIP moved, split brain)', labelNames: ['backend', 'protocol'], registers: [registry] });
export const backendSplitBrain = new Gauge({ name: 'mailproxy_backend_split_brain', help: '1 while two identities answer in turn on one of the backend\'s endpoints (split brain)', labelNames: ['backend'], registers: [registry] });
// Per-backend cap on connection attempts in flight (backendLogin.maxInFlightPerBackend, proxy/backend-limit.ts), per process.
export const backendAttemptsQueuedTotal = new Counter({ name: 'mailproxy_backend_attempts_queued_total', help: 'Backend connection attempts that waited for a slot under backendLogin.maxInFlightPerBackend', labelNames: ['backend'], registers: [registry] });
export const backendAttemptWaitSeconds = new Histogram({ name: 'mailproxy_backend_attempt_wait_seconds', help: 'How long queued backend connection attempts waited for their slot', labelNames: ['backend'], buckets: LATENCY_BUCKETS, registers: [registry] });
export const backendAttemptsRefusedTotal = new Counter({ name: 'mailproxy_backend_attempts_refused_total', help: 'Backend connection attempts refused with the temporary error by the per-backend cap: queue_full, wait_timeout', labelNames: ['backend', 'reason'], registers: [registry] });
export const backendAttemptsWaiting = new Gauge({ name: 'mailproxy_backend_attempts_waiting', help: 'Backend connection attempts waiting for a slot now', labelNames: ['backend'], registers: [registry] });
export const probesTotal = new Counter({ name: 'mailproxy_probes_total', help: 'Active health probes by result', labelNames: ['backend', 'protocol', 'result'], registers: [registry] });
export const ldapUp = new Gauge({ name: 'mailproxy_ldap_up', help: '1 when the LDAP server answers', labelNames: ['server'], registers: [registry] });
export const ldapServiceBindOk = new Gauge({ name: 'mailproxy_ldap_service_bind_ok', help: '1 while the LDAP probe\'s service-account bind is accepted, 0 while the server rejects it (bindDN/bindPassword out of date)', labelNames: ['server'], registers: [registry] });
export const workerRestartsTotal = new Counter({ name: 'mailproxy_worker_restarts_total', help: 'Cluster workers replaced by the primary, by reason (exited, unresponsive)', labelNames: ['reason'], registers: [registry] });
export const smtpMessagesTotal = new Counter({ name: 'mailproxy_smtp_messages_total', help: 'SMTP transactions by service and result', labelNames: ['service', 'result'], registers: [registry] });
export const smtpRecipientsTotal = new Counter({ name: 'mailproxy_smtp_recipients_total', help: 'SMTP recipients by service and result', labelNames: ['service', 'result'], registers: [registry] });

/** Seconds until each client-facing certificate's notAfter, computed at scrape time from what the instance serves. */
let certificateExpiries: () => Array<{ name: string; notAfter: number }> = () => [];
export function setCertificateExpirySource(source: () => Array<{ name: string; notAfter: number }>): void { certificateExpiries = source; }
export const tlsCertificateExpirySeconds = new Gauge({
  name: 'mailproxy_tls_certificate_expiry_seconds', help: 'Seconds until a client-facing TLS certificate expires (negative: expired), by config name or CN', labelNames: ['name'], registers: [registry],
  collect() {
    this.reset();
    const now = Date.now();
    for (const c of certificateExpiries()) this.set({ name: c.name }, Math.round((c.notAfter - now) / 1000));
  },
});
// Tier (Redis shared state, src/tier/). tier_up aggregates with min across cluster workers: 0 when any process is cut off.
export const tierUp = new Gauge({ name: 'mailproxy_tier_up', help: '1 while the shared tier state (Redis) is reachable, 0 while this instance runs on local state', registers: [registry], aggregator: 'min' });
export const tierFallbacksTotal = new Counter({ name: 'mailproxy_tier_fallbacks_total', help: 'Tier operations answered from local state because Redis failed or was unreachable', labelNames: ['operation'], registers: [registry] });
export const tierCommandSeconds = new Histogram({ name: 'mailproxy_tier_command_seconds', help: 'Latency of tier operations that Redis answered', labelNames: ['operation'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1], registers: [registry] });
export const tierStateChangesTotal = new Counter({ name: 'mailproxy_tier_state_changes_total', help: 'Tier connectivity changes (to up or down)', labelNames: ['to'], registers: [registry] });
export const tierBroadcastsTotal = new Counter({ name: 'mailproxy_tier_broadcasts_total', help: 'Admin actions broadcast to (sent) or received from (received) the tier, by type', labelNames: ['type', 'direction'], registers: [registry] });
export const tierKicksTotal = new Counter({ name: 'mailproxy_tier_kicks_total', help: 'Kicks that could not go out at once or reached this instance late: pending (issued while Redis was away), sent_late (a pending one published), dropped (pending past tier.kicks.maxPending or maxAgeMs), replayed (read from the recent-kicks stream after missing its broadcast), expired (read too late to apply)', labelNames: ['outcome'], registers: [registry] });
export const tierBackendDown = new Gauge({ name: 'mailproxy_tier_backend_down', help: '1 while the tier (a quorum of instances) holds the backend endpoint down', labelNames: ['backend', 'protocol'], registers: [registry], aggregator: 'max' });
export const tierLimitRefusalsTotal = new Counter({ name: 'mailproxy_tier_limit_refusals_total', help: 'Logins refused by a tier-wide session limit, by limit (user, address)', labelNames: ['protocol', 'limit'], registers: [registry] });

// Pools (issue 13): per pool and member, never per user.
export const poolUsersLive = new Gauge({ name: 'mailproxy_pool_users_live', help: 'Users with live sessions on a pool member (this process)', labelNames: ['pool', 'member'], registers: [registry] });
export const poolRoutesTotal = new Counter({ name: 'mailproxy_pool_routes_total', help: 'Pool route decisions at login by member and reason (hash, failover, live-sessions, draining, moving, none)', labelNames: ['pool', 'member', 'reason'], registers: [registry] });
export const poolMovesTotal = new Counter({ name: 'mailproxy_pool_moves_total', help: 'Users moved off a pool member by reason (down, move-back, drain, conflict)', labelNames: ['pool', 'reason'], registers: [registry] });
export const poolSessionsClosedTotal = new Counter({ name: 'mailproxy_pool_sessions_closed_total', help: 'Sessions closed to move their user to another pool member', labelNames: ['pool', 'member', 'reason'], registers: [registry] });
