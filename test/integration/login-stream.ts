// Owns measuring logins as clients see them: one IMAP LOGIN through the proxy classified by its answer, timed, and steady streams of them.
// Must not assert; fault tests assert on the classes and times it returns.
import { LineClient } from './harness/line-client.js';

/** What the client saw: OK, the temporary error, an authentication failure, or anything else (a hang cut off, garbage). */
export type AnswerClass = 'ok' | 'unavailable' | 'auth_failed' | 'other';

export interface LoginResult { user: string; cls: AnswerClass; ms: number; startedAt: number; answer: string }

/** Greeting, LOGIN and LOGOUT on a fresh connection; `ms` is the LOGIN command's round trip. */
export async function imapLogin(port: number, user: string, password: string, timeoutMs = 30_000): Promise<LoginResult> {
  const startedAt = Date.now();
  let c: LineClient | undefined;
  try {
    c = await LineClient.connect(port, { timeoutMs });
    await c.readLine();
    const t0 = performance.now();
    const answer = await c.command('a', `LOGIN ${user} ${password}`, timeoutMs);
    const ms = performance.now() - t0;
    const line = answer.split('\n').find((l) => l.startsWith('a ')) ?? answer;
    const cls: AnswerClass = /^a OK/.test(line) ? 'ok' : /^a NO \[UNAVAILABLE\]/.test(line) ? 'unavailable' : /^a NO \[AUTHENTICATIONFAILED\]/.test(line) ? 'auth_failed' : 'other';
    if (cls === 'ok') c.send('b LOGOUT');
    return { user, cls, ms, startedAt, answer: line.trim() };
  } catch (e) {
    return { user, cls: 'other', ms: Date.now() - startedAt, startedAt, answer: String((e as Error).message ?? e) };
  } finally {
    c?.close();
  }
}

export interface StreamOptions {
  port: number;
  users: Array<{ user: string; password: string }>;
  /** Logins started per second (each on its own connection, not waiting for the previous one). */
  perSecond: number;
  durationMs: number;
  /** Called once, this long after the stream started (inject the fault here). */
  at?: Array<{ afterMs: number; run: () => void | Promise<void> }>;
}

/** A steady stream of logins, like users arriving; resolves with every login's result once all have answered. */
export async function loginStream(o: StreamOptions): Promise<LoginResult[]> {
  const pending: Array<Promise<LoginResult>> = [];
  const t0 = Date.now();
  const faults = (o.at ?? []).map((f) => new Promise<void>((resolve, reject) => setTimeout(() => { Promise.resolve().then(f.run).then(resolve, reject); }, f.afterMs)));
  const gap = 1000 / o.perSecond;
  for (let i = 0; Date.now() - t0 < o.durationMs; i++) {
    const u = o.users[i % o.users.length]!;
    pending.push(imapLogin(o.port, u.user, u.password));
    const next = t0 + (i + 1) * gap;
    await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
  }
  await Promise.all(faults);
  return Promise.all(pending);
}

export interface Summary { total: number; errors: number; byClass: Record<string, number>; p50: number; p99: number; max: number }

export function summarize(results: LoginResult[], expected: AnswerClass = 'ok'): Summary {
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)] ?? 0;
  const byClass: Record<string, number> = {};
  for (const r of results) byClass[r.cls] = (byClass[r.cls] ?? 0) + 1;
  return { total: results.length, errors: results.filter((r) => r.cls !== expected).length, byClass, p50: Math.round(pct(50)), p99: Math.round(pct(99)), max: Math.round(times.at(-1) ?? 0) };
}

export function describeSummary(s: Summary): string {
  return `${s.total} logins, ${s.errors} unexpected (${JSON.stringify(s.byClass)}), p50 ${s.p50} ms, p99 ${s.p99} ms, max ${s.max} ms`;
}
