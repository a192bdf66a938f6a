// Owns the client side of the pool tests: one IMAP or POP3 login+logout with retry on temporary failures, held IMAP
// sessions, and a small concurrency runner. Must not assert where a session landed (the backends' own logs say that).
import { LineClient } from './harness/line-client.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type Attempt = 'ok' | 'temp';

/** LOGIN then LOGOUT; 'temp' for a temporary refusal (NO [UNAVAILABLE]: a pool move in progress, a member just down). */
export async function imapOnce(port: number, user: string, password: string): Promise<Attempt> {
  const c = await LineClient.connect(port, { timeoutMs: 10_000 });
  try {
    const greeting = await c.readLine(10_000);
    if (!/^\* OK/.test(greeting)) return 'temp';
    const r = await c.command('a', `LOGIN ${user} ${password}`, 15_000);
    if (/^a OK/m.test(r)) {
      await c.command('b', 'LOGOUT', 10_000);
      return 'ok';
    }
    if (/UNAVAILABLE/.test(r)) return 'temp';
    throw new Error(`IMAP login of ${user} refused: ${r.trim()}`);
  } finally {
    c.close();
  }
}

/** USER/PASS then QUIT; 'temp' for -ERR [SYS/TEMP]. */
export async function pop3Once(port: number, user: string, password: string): Promise<Attempt> {
  const c = await LineClient.connect(port, { timeoutMs: 10_000 });
  try {
    if (!/^\+OK/.test(await c.readLine(10_000))) return 'temp';
    c.send(`USER ${user}`);
    await c.readLine(10_000);
    c.send(`PASS ${password}`);
    const r = await c.readLine(15_000);
    if (/^\+OK/.test(r)) {
      c.send('QUIT');
      await c.readLine(10_000);
      return 'ok';
    }
    if (/SYS\/TEMP/.test(r)) return 'temp';
    throw new Error(`POP3 login of ${user} refused: ${r.trim()}`);
  } finally {
    c.close();
  }
}

/** Retry temporary failures (and connection errors) until one attempt succeeds; returns how many temporary refusals it took. */
export async function untilOk(attempt: () => Promise<Attempt>, tries = 60, delayMs = 100): Promise<number> {
  let temps = 0;
  for (let i = 0; i < tries; i++) {
    try {
      if ((await attempt()) === 'ok') return temps;
    } catch (e) {
      if (/refused:/.test((e as Error).message)) throw e;
    }
    temps++;
    await sleep(delayMs);
  }
  throw new Error(`no successful login after ${tries} tries`);
}

/** A logged-in IMAP session kept open (IDLE-like client); `bye` resolves with the server's BYE line when it is closed for a move. */
export async function holdImap(port: number, user: string, password: string): Promise<{ client: LineClient; bye: Promise<string>; byeAt: Promise<number> }> {
  for (let i = 0; i < 60; i++) {
    const c = await LineClient.connect(port, { timeoutMs: 10_000 });
    await c.readLine(10_000);
    const r = await c.command('a', `LOGIN ${user} ${password}`, 15_000);
    if (/^a OK/m.test(r)) {
      const bye = c.readUntil(/^\* BYE/, 120_000);
      bye.catch(() => undefined); // awaited by the test when it matters; a closed client must not be an unhandled rejection
      const byeAt = bye.then(() => Date.now());
      byeAt.catch(() => undefined);
      return { client: c, bye, byeAt };
    }
    c.close();
    await sleep(100);
  }
  throw new Error(`could not hold a session for ${user}`);
}

/** Run `fn` over `items` with at most `n` in flight. */
export async function runAll<T>(items: readonly T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}
