// Owns the one backend-session pipeline of every protocol: admit (health gate) → connect (PROXY v2, TLS) → the protocol's sans-I/O BackendLogin under one Budget (greeting timeout, ride-through retries) → health report (outcome, greeting identity) → login metric.
// Must not decide anything protocol-specific; it moves lines and TLS upgrades, and hands back the logged-in socket.
import type { CancelSignal } from '../core/cancel.js';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { ProxyError, toProxyError } from '../errors.js';
import type { Route } from '../directory/backends.js';
import type { BackendGate } from '../health/gate.js';
import type { Config } from '../config/schema.js';
import { Budget, type Clock } from '../core/clock.js';
import type { ClientEndpoint } from '../core/types.js';
import { backendLoginSeconds } from '../metrics.js';
import type { BackendAction, BackendLogin } from './protocol.js';
import { connectBackend, type Dial } from './backend-connect.js';
import type { BackendGuard } from './backend-guard.js';
import type { AttemptSlot, BackendLimiter } from './backend-limit.js';
import { LineReader } from './line-reader.js';
import { upgradeClient } from './starttls.js';
import { normaliseIdentity } from '../health/probe.js';

/** A route the health gate let through (the wanted one, or its standby). Only `admit` makes one. */
export type AdmittedRoute = Route & { readonly admitted: true; /** The backend the directory chose, when a standby stands in. */ readonly routedFor?: string };

export interface BackendSession {
  route: AdmittedRoute;
  /** Connection attempts it took (more than one: ride-through across a failover). */
  attempts: number;
  socket: Socket;
  /** The backend's final login reply without tag, for the client dialogue. */
  text: string;
  /** Backend bytes received after that reply. */
  leftover: Buffer;
  /** The greeting's identity (normalised): which node behind the backend's address this session is on. */
  identity?: string;
}

export interface OpenRequest {
  client: ClientEndpoint;
  /** The client's connection to the proxy is TLS (sent on in a PROXY v2 header). */
  clientTls: boolean;
  /** The protocol's sans-I/O login machine for this route. */
  login(route: Route): BackendLogin;
  /** Abort (client went away, deadline passed): the outcome is then not reported to health. */
  signal?: CancelSignal;
}

export interface BackendSessionDeps {
  gate: BackendGate;
  clock: Clock;
  dial: Dial;
  /** Loop protection (never our own listeners) and backend sourceAddresses; the Instance's. */
  guard?: BackendGuard;
  /** The per-backend cap on attempts in flight and its wait queue (the Instance's); no cap when absent. */
  limiter?: BackendLimiter;
}

const MAX_BACKEND_LINE = 64 * 1024;
/** Ride-through: pause between attempts at a backend that refused, while health says a failover may be in progress. */
export const RIDE_THROUGH_RETRY_MS = 200;

/** What one attempt learnt besides its outcome: the greeting (identity) and whether the backend hung. */
interface Progress {
  greeting: string[]; greeted: boolean; hung: boolean;
  /** The greeting itself said "not now" (a server shutting down). */ refusedGreeting?: boolean;
  /** The connection closed or reset before the login reply (not: the backend answered the login with a refusal). */ dropped?: boolean;
  /** Greeted, then silent for replyTimeoutMs while the proxy waited for a reply (STARTTLS, ID/XCLIENT, login). */ silent?: boolean;
}

/** The name and password the proxy logs in to the backend with: the user's own, or `login<sep>master` (built here only). */
export function backendCredentials(bl: Config['backendLogin'], login: string, password: string): { user: string; password: string } {
  return bl.mode === 'master' ? { user: `${login}${bl.masterSeparator}${bl.masterUser ?? ''}`, password: bl.masterPassword ?? '' } : { user: login, password };
}

/** Step 1: where a new backend session for `wanted` goes (health may substitute the standby, or throw BACKEND_DOWN / BACKEND_MAINTENANCE / BACKEND_SPLIT_BRAIN). */
export function admit(gate: BackendGate, wanted: Route): AdmittedRoute {
  const route = gate.admit(wanted);
  return { ...route, admitted: true, ...(route.backend !== wanted.backend ? { routedFor: wanted.backend } : {}) };
}

/**
 * Steps 2–5 for an admitted route, under one budget (backendLogin.backendLoginBudgetMs; connect also bounded by
 * connectTimeoutMs, the greeting by greetingTimeoutMs). Ride-through: when the backend refused, reset or could not be
 * reached before greeting, and health says it has been failing for less than rideThroughMs, the login tries again every
 * RIDE_THROUGH_RETRY_MS within its budget and succeeds as soon as the backend answers. A hang (accepted, no greeting
 * within greetingTimeoutMs) or anything after the greeting fails at once. Every attempt is reported to health.
 * After the greeting, each backend reply must come within replyTimeoutMs (above the backend's own auth-failure delay).
 * Its expiry is reported to health as a failure, not a hang (a slow passdb behind a live backend looks the same; probes
 * confirm a real hang), and is never retried: the backend may have acted on the command, and in a chain of proxies
 * each hop retrying the next one's wait would multiply it.
 */
export async function openBackendSession(deps: BackendSessionDeps, route: AdmittedRoute, bl: Config['backendLogin'], req: OpenRequest): Promise<BackendSession> {
  const budget = new Budget(deps.clock, bl.backendLoginBudgetMs);
  let attempts = 0;
  for (;;) {
    // A client that left (during the directory lookup, or a ride-through wait) gets no backend login on its behalf.
    if (req.signal?.aborted) throw new ProxyError('CLIENT_GONE', attempts > 0 ? `after ${attempts} attempts` : undefined);
    attempts++;
    const progress: Progress = { greeting: [], greeted: false, hung: false };
    let slot: AttemptSlot | undefined;
    try {
      // The wait for a slot counts against the login's budget; a refusal (BACKEND_BUSY) is ours, not the backend's.
      slot = await deps.limiter?.acquire(route.backend, budget.left(), req.signal);
      const proxyFor = route.trustsProxy && route.forwardClientAddress === 'proxy-v2' ? req.client : undefined;
      const socket = await connectBackend(route, {
        timeoutMs: Math.max(1, Math.min(bl.connectTimeoutMs, budget.left())), dial: deps.dial, clock: deps.clock,
        ...(proxyFor ? { proxyFor, clientTls: req.clientTls } : {}),
        ...(deps.guard ? { guard: deps.guard } : {}),
      });
      const done = await runBackendLogin(socket, req.login(route), route, budget, deps.clock, req.signal, { greetingMs: Math.min(bl.greetingTimeoutMs, budget.timer()), replyMs: bl.replyTimeoutMs, ...(slot ? { slot } : {}) }, progress);
      slot?.release();
      backendLoginSeconds.observe({ backend: route.backend, protocol: route.protocol, result: 'ok' }, budget.elapsed() / 1000);
      const identity = report(deps.gate, route, 'ok', progress);
      return { route, ...done, attempts, ...(identity !== undefined ? { identity } : {}) };
    } catch (e) {
      const err = toProxyError(e, 'BACKEND_PROTOCOL');
      // Not reported: a loop (the backend was never reached), this host out of descriptors or ports (its fault, not the
      // backend's), no slot under the cap (never tried), and a greeting that did not come while the backend greeted
      // another of our attempts within greetingTimeoutMs: alive and busy with our own load, not hung (the probe, never
      // queued, judges). A backend that greets nobody (stopped, hung) is reported, so real logins speed its detection.
      const busyNotHung = progress.hung && (slot?.othersGreetedWithin(bl.greetingTimeoutMs) ?? false);
      const unreported = err.code === 'ROUTE_LOOP' || err.code === 'LOCAL_RESOURCES' || err.code === 'BACKEND_BUSY' || busyNotHung;
      slot?.release();
      if (!req.signal?.aborted && !unreported) report(deps.gate, route, progress.hung ? 'hang' : err.spec.health === 'backend-failure' ? 'fail' : 'ok', progress);
      // Refused, reset, unreachable, closed before the login reply, or greeted with a refusal (IMAP "* BYE", POP3 "-ERR",
      // SMTP 421): a server on its way down. The login never completed, so trying again cannot log in twice.
      // A login *answered* with a temporary refusal (NO [UNAVAILABLE] from a proxy that cut a loop, 454) is final.
      const refused = !progress.hung && !progress.silent && ((!progress.greeted && err.code === 'BACKEND_UNAVAILABLE') || progress.dropped === true || progress.refusedGreeting === true);
      if (refused && !req.signal?.aborted && (await rideThrough(deps, route, budget, req.signal))) continue;
      backendLoginSeconds.observe({ backend: route.backend, protocol: route.protocol, result: err.spec.metricLabel }, budget.elapsed() / 1000);
      throw attempts > 1 ? new ProxyError(err.code, `${err.detail ?? err.spec.logReason} (after ${attempts} attempts in ${budget.elapsed()} ms)`, { cause: err }) : err;
    }
  }
}

/** Tell health the outcome (with the greeting's identity when there was one); returns that identity. */
function report(gate: BackendGate, route: Route, outcome: 'ok' | 'fail' | 'hang', progress: Progress): string | undefined {
  if (!progress.greeted) { gate.report(route, outcome); return undefined; }
  const identity = normaliseIdentity(progress.greeting);
  gate.report(route, outcome, identity);
  return identity;
}

/** Wait RIDE_THROUGH_RETRY_MS when health allows another attempt within the hold and the budget; false: fail now. */
function rideThrough(deps: BackendSessionDeps, route: Route, budget: Budget, signal: CancelSignal | undefined): Promise<boolean> {
  const until = deps.gate.rideThroughUntil?.(route) ?? null;
  const now = deps.clock.now();
  if (until === null || now + RIDE_THROUGH_RETRY_MS >= until || RIDE_THROUGH_RETRY_MS >= budget.left()) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => { deps.clock.clearTimeout(timer); resolve(false); };
    const timer = deps.clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(!signal?.aborted); }, RIDE_THROUGH_RETRY_MS);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Feed the backend's lines to `machine` and perform its send / start-tls / done / fail actions until done, within `budget`. */
function runBackendLogin(first: Socket, machine: BackendLogin, route: Route, budget: Budget, clock: Clock, signal: CancelSignal | undefined, limits: { greetingMs: number; replyMs: number; slot?: AttemptSlot }, progress: Progress): Promise<Omit<BackendSession, 'route' | 'attempts'>> {
  return new Promise((resolve, reject) => {
    let socket = first;
    let settled = false;
    let upgrading = false;
    const reader = new LineReader(MAX_BACKEND_LINE);
    const timer = clock.setTimeout(() => fail(new ProxyError('BACKEND_UNAVAILABLE', `backend login did not finish within ${budget.ms} ms`)), budget.timer());
    // One timer bounds the backend's silence, not the whole budget. Before the greeting: greetingMs, then it is hung.
    // After it: replyMs since the backend last spoke while the proxy waits for a reply. Lines (and a finished TLS
    // handshake) only stamp `heard`; the timer moves on when it fires, so a normal login arms and clears this one timer.
    let heard = clock.now();
    const onSilence = () => {
      const limit = progress.greeted ? limits.replyMs : limits.greetingMs;
      const quiet = clock.now() - heard;
      if (quiet < limit) { silenceTimer = clock.setTimeout(onSilence, limit - quiet); return; }
      // A greeting late while the backend greeted another of our attempts within greetingMs: it is alive and busy with
      // our own load (an unpooled Dovecot forking a login process per connection). Dropping this connection would leave
      // it forking for nobody and the next attempt would add another; wait on, within the budget. A hung backend greets
      // nobody, so this ends within one more greetingMs.
      if (!progress.greeted && limits.slot?.othersGreetedWithin(limits.greetingMs)) { heard = clock.now(); silenceTimer = clock.setTimeout(onSilence, limit); return; }
      if (progress.greeted) progress.silent = true;
      else progress.hung = true;
      fail(new ProxyError('BACKEND_UNAVAILABLE', progress.greeted ? `greeted, but no reply within ${limit} ms` : `accepted, but no greeting within ${limit} ms`));
    };
    let silenceTimer = clock.setTimeout(onSilence, Math.min(limits.greetingMs, limits.replyMs));
    const greeted = (line: string) => {
      // After the greeting, an untagged BYE (IMAP) or a 421 (SMTP) is the server closing on its way down, not an answer.
      if (progress.greeted) { heard = clock.now(); if (/^(\* BYE\b|421[ -])/i.test(line)) progress.dropped = true; return; }
      progress.greeting.push(line);
      if (progress.greeting.length === 1 && /^(\* BYE\b|-ERR\b|421[ -])/i.test(line)) progress.refusedGreeting = true;
      // RFC 5321 §4.2.1: "220-" lines continue the greeting; so do ManageSieve's quoted capability lines before its OK
      // (RFC 5804 §1.7; the probe reads up to the OK, and a different identity here would look like a split brain).
      // IMAP/POP3 greet in one line.
      if (/^(\d{3}-|")/.test(line)) return;
      progress.greeted = true;
      limits.slot?.greeted();
      heard = clock.now();
    };
    const onAbort = () => fail(new ProxyError('CLIENT_GONE'));
    signal?.addEventListener('abort', onAbort, { once: true });

    const detach = () => {
      clock.clearTimeout(timer);
      clock.clearTimeout(silenceTimer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
    };
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      detach();
      socket.destroy();
      reject(toProxyError(e, 'BACKEND_PROTOCOL'));
    };
    const onClose = () => { if (!settled) progress.dropped = true; fail(new ProxyError('BACKEND_UNAVAILABLE', 'backend closed the connection during login')); };
    const onError = (e: NodeJS.ErrnoException) => { if (!settled) progress.dropped = true; fail(new ProxyError('BACKEND_UNAVAILABLE', `backend socket: ${e.code ?? e.message}`)); };
    const onData = (chunk: Buffer | null) => {
      try {
        let line = reader.pushOne(chunk);
        while (line !== null && !settled && !upgrading) {
          greeted(line);
          run(machine.step({ kind: 'line', line }));
          if (settled || upgrading) break;
          line = reader.pushOne(null);
        }
      } catch (e) { fail(toProxyError(e, 'BACKEND_PROTOCOL')); }
    };
    const run = (actions: BackendAction[]) => {
      for (const a of actions) {
        if (settled) return;
        switch (a.kind) {
          case 'send': socket.write(a.bytes); break;
          case 'fail': fail(a.error); return;
          case 'done': {
            settled = true;
            detach();
            // Hold what the backend sends next in the stream until the relay (or SMTP client) takes over, without
            // stopping the kernel reads: Socket.pause() would readStop a bulk socket and the relay's resume readStart
            // it, two epoll_ctl calls per login for a pause that lasts a few microtasks. The stream's high-water mark
            // still bounds what is buffered (a full stream stops the reads itself).
            Duplex.prototype.pause.call(socket);
            resolve({ socket, text: a.text, leftover: reader.rest() });
            return;
          }
          case 'start-tls': {
            upgrading = true;
            socket.off('data', onData);
            socket.off('close', onClose);
            reader.rest(); // RFC 3501 §6.2.1 / RFC 3207 §4.2: nothing the server sent before the handshake counts afterwards
            upgradeClient(socket, route, budget.timer())
              .then((tls) => {
                if (settled) { tls.destroy(); return; }
                socket.off('error', onError);
                socket = tls;
                upgrading = false;
                heard = clock.now();
                socket.on('data', onData).on('close', onClose).on('error', onError);
                run(machine.step({ kind: 'tls-ready' }));
              }, fail);
            return;
          }
        }
      }
    };
    socket.on('data', onData).on('close', onClose).on('error', onError);
    // The client left while the proxy was connecting: the listener added above never runs, and the login would go on.
    if (signal?.aborted) onAbort();
  });
}
