// Owns one active probe of one backend endpoint: connect (TLS when implicit), read the greeting, say goodbye, report identity and latency.
// Must not schedule probes, keep state between probes or touch health state; it never throws (failures are results).
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Route, RouteProtocol } from '../directory/backends.js';
import { isLocalResourceError, sanitize } from '../errors.js';
import type { Clock } from '../core/clock.js';
import { encodeProxyV2Local } from '../core/proxy-header.js';
import { backendTlsOptions } from '../core/tls.js';

/** `local`: the probe could not open a connection on this host (descriptors, ports, buffers): no verdict on the backend. */
export type ProbeFailure = 'timeout' | 'connect' | 'bad_greeting' | 'closed' | 'deep' | 'local';

export interface ProbeResult {
  backend: string;
  protocol: RouteProtocol;
  ok: boolean;
  /** Wall-clock time the probe finished (ms since epoch). */
  at: number;
  /** Connect to greeting (plus the deep probe, when run). */
  latencyMs: number;
  /** Normalised greeting text; a change between probes means another server answered. */
  identity?: string;
  failure?: ProbeFailure;
  /** A timeout after the backend accepted the TCP connection: it is hung (SIGSTOP), not moving or refusing. */
  hang?: true;
  /** Sanitised detail for logs and /backends (never client-facing). */
  error?: string;
  deep?: boolean;
}

/** Opens the probe connection; the default uses node:net / node:tls. Errors surface as 'error' events. */
export type Dial = (route: Route) => Duplex;

/** Logs in as the probe account and selects INBOX; rejects on failure. */
export type DeepProbe = (route: Route, timeoutMs: number) => Promise<void>;

export interface ProbeOptions {
  timeoutMs: number;
  clock: Clock;
  dial?: Dial;
  deepProbe?: DeepProbe;
}

const MAX_GREETING_BYTES = 4096;

export const defaultDial: Dial = (route) => {
  // A backend that takes PROXY v2 from us (e.g. Dovecot `haproxy = yes`) waits for a header before its greeting:
  // the probe sends LOCAL, as HAProxy's own checks do.
  const proxied = route.trustsProxy && route.forwardClientAddress === 'proxy-v2';
  const tlsOptions = backendTlsOptions(route);
  if (!proxied) {
    return route.tls === 'implicit' ? tls.connect({ host: route.host, port: route.port, ...tlsOptions }) : net.connect({ host: route.host, port: route.port });
  }
  const raw = net.connect({ host: route.host, port: route.port });
  raw.write(encodeProxyV2Local());
  return route.tls === 'implicit' ? tls.connect({ socket: raw, ...tlsOptions }) : raw;
};

/** What ends the greeting and what we send afterwards, per protocol (RFC 9051 §7.1.1 / RFC 1939 §4 / RFC 5321 §4.2). */
const DIALECT: Record<RouteProtocol, { quit: string; judge(lines: string[]): 'more' | 'ok' | 'bad' }> = {
  imap: { quit: 'p1 LOGOUT\r\n', judge: (l) => (/^\* (OK|PREAUTH)\b/i.test(l[0]!) ? 'ok' : 'bad') },
  pop3: { quit: 'QUIT\r\n', judge: (l) => (/^\+OK\b/i.test(l[0]!) ? 'ok' : 'bad') },
  submission: { quit: 'QUIT\r\n', judge: judgeSmtp },
  smtp: { quit: 'QUIT\r\n', judge: judgeSmtp },
  lmtp: { quit: 'QUIT\r\n', judge: judgeSmtp },
  // RFC 5804 §1.7: the greeting is the capability list ended by OK (NO/BYE: refused).
  sieve: { quit: 'LOGOUT\r\n', judge: (l) => (/^OK\b/i.test(l[l.length - 1]!) ? 'ok' : /^(NO|BYE)\b/i.test(l[l.length - 1]!) ? 'bad' : l.length > 64 ? 'bad' : 'more') },
};

// RFC 5321 §4.2.1: a multiline reply is "220-…" lines ended by one "220 …" line.
function judgeSmtp(lines: string[]): 'more' | 'ok' | 'bad' {
  const last = lines[lines.length - 1]!;
  if (!/^\d{3}[- ]?/.test(last)) return 'bad';
  if (!last.startsWith('220')) return 'bad';
  return last[3] === '-' ? 'more' : 'ok';
}

/**
 * The part of a greeting that names the server: status word and response codes removed, per-connection
 * noise (APOP timestamps, clock times, long numbers) masked, whitespace collapsed.
 */
export function normaliseIdentity(greetingLines: string[]): string {
  // A backend greets every login the same way: six regex passes once per distinct greeting, not once per login.
  const raw = greetingLines.length === 1 ? greetingLines[0]! : greetingLines.join('\n');
  let id = identities.get(raw);
  if (id === undefined) {
    if (identities.size >= IDENTITY_MEMO_MAX) identities.clear();
    id = normalise(greetingLines);
    identities.set(raw, id);
  }
  return id;
}

const IDENTITY_MEMO_MAX = 256;
const identities = new Map<string, string>();

function normalise(greetingLines: string[]): string {
  const text = greetingLines
    .map((l) => l.replace(/^(\* (OK|PREAUTH|BYE)|\+OK|-ERR|\d{3}[- ]?)\s*/i, ''))
    .join(' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\b\d{1,2}:\d{2}(:\d{2})?\b/g, '#')
    .replace(/\b\d{6,}\b/g, '#')
    .replace(/\s+/g, ' ')
    .trim();
  return sanitize(text, 160);
}

/** Run one probe; always resolves. */
export function probeOnce(route: Route, opts: ProbeOptions): Promise<ProbeResult> {
  const { clock } = opts;
  const started = clock.now();
  const dialect = DIALECT[route.protocol];
  const base = { backend: route.backend, protocol: route.protocol };

  return new Promise<ProbeResult>((resolve) => {
    let done = false;
    let sock: Duplex | undefined;
    let buf = '';
    const lines: string[] = [];

    const finish = (r: Omit<ProbeResult, 'backend' | 'protocol' | 'at' | 'latencyMs'>, latencyMs = clock.now() - started): void => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      resolve({ ...base, ...r, at: clock.now(), latencyMs });
    };
    const fail = (failure: ProbeFailure, error: string): void => {
      finish({ ok: false, failure, error: sanitize(error, 160) });
      sock?.destroy();
    };
    let stage = 'greeting';
    let accepted = false;
    const timer = clock.setTimeout(() => {
      if (!accepted) return fail('timeout', `no connection within ${opts.timeoutMs} ms`);
      finish({ ok: false, failure: 'timeout', hang: true, error: `accepted, but no ${stage} within ${opts.timeoutMs} ms` });
      sock?.destroy();
    }, opts.timeoutMs);

    try {
      sock = (opts.dial ?? defaultDial)(route);
    } catch (e) {
      fail(isLocalResourceError(e) ? 'local' : 'connect', errText(e));
      return;
    }
    sock.once('connect', () => { accepted = true; });
    sock.setEncoding?.('latin1');
    sock.on('error', (e) => fail(!accepted && isLocalResourceError(e) ? 'local' : 'connect', errText(e)));
    sock.on('close', () => fail('closed', 'connection closed before greeting'));
    sock.on('data', (chunk: string | Buffer) => {
      if (done) return;
      accepted = true;
      buf += typeof chunk === 'string' ? chunk : chunk.toString('latin1');
      if (buf.length > MAX_GREETING_BYTES) return fail('bad_greeting', 'greeting too long');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl).replace(/\r$/, ''));
        buf = buf.slice(nl + 1);
        const verdict = dialect.judge(lines);
        if (verdict === 'more') continue;
        if (verdict === 'bad') return fail('bad_greeting', `unexpected greeting: ${lines.join(' | ')}`);
        return greeted(sock!);
      }
    });

    const greeted = (s: Duplex): void => {
      const identity = normaliseIdentity(lines);
      const greetMs = clock.now() - started;
      for (const ev of ['data', 'close', 'error']) s.removeAllListeners(ev);
      s.on('error', () => undefined);
      s.end(dialect.quit);
      // The goodbye is a courtesy: never wait for it, never let a slow close hold the socket.
      const killer = clock.setTimeout(() => s.destroy(), 1000);
      s.once('close', () => clock.clearTimeout(killer));
      if (!opts.deepProbe || route.protocol !== 'imap') return finish({ ok: true, identity }, greetMs);
      stage = 'deep probe answer';
      const remaining = Math.max(1, opts.timeoutMs - greetMs);
      opts.deepProbe(route, remaining).then(
        () => finish({ ok: true, identity, deep: true }),
        (e) => finish({ ok: false, identity, deep: true, failure: 'deep', error: sanitize(`deep probe: ${errText(e)}`, 160) }),
      );
    };
  });
}

function errText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}
