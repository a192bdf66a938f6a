// Owns the one structured logger (pino JSON) and the rule that secrets never reach a log line.
// Must not decide what to log; modules call child loggers with their connection id and phase.
import { writeSync } from 'node:fs';
import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Log lines are gathered into writes of at least LOG_BATCH_BYTES, and whatever is gathered is written at least every
 * LOG_FLUSH_MS: one write per line (two per session) cost the proxy more CPU than the rest of a login (each async write
 * is a hand-off to the thread pool). Buffered lines are written synchronously on exit (LineBatch); a SIGKILL loses at
 * most LOG_FLUSH_MS of them.
 */
const LOG_BATCH_BYTES = 4096;
const LOG_FLUSH_MS = 250;

/** Keys whose values never reach a log line, at the top level and one or two levels down (`credentials.password`). */
const SECRET_KEYS: ReadonlySet<string> = new Set(['password', 'pass', 'bindPassword', 'masterPassword', 'token', 'authorization']);
const CENSOR = '[redacted]';
const SCRUB_DEPTH = 2;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/**
 * `obj` with every secret key's value replaced by `[redacted]` (copying only the objects on the way to one); `obj`
 * itself when it holds none, so an ordinary log line allocates nothing here. pino's own `redact` option re-parsed its
 * paths and cloned the record on every line (8 of the 22 KB a login allocated for its two log lines).
 */
export function scrubSecrets(obj: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in obj) {
    const v = obj[key];
    let clean = v;
    if (SECRET_KEYS.has(key)) { if (v !== undefined) clean = CENSOR; } else if (depth < SCRUB_DEPTH && isPlainObject(v)) clean = scrubSecrets(v, depth + 1);
    if (clean !== v) { out ??= shallowCopy(obj); out[key] = clean; }
  }
  return out ?? obj;
}

/** A copy to censor in; an Error stays an Error with its message, stack and cause (own but not enumerable), so pino's err serializer still shows them. */
function shallowCopy(obj: Record<string, unknown>): Record<string, unknown> {
  if (!(obj instanceof Error)) return { ...obj };
  const e = obj as Error & Record<string, unknown>;
  return Object.assign(Object.create(Object.getPrototypeOf(e) as object) as Record<string, unknown>, e, { message: e.message, stack: e.stack, ...(e.cause !== undefined ? { cause: e.cause } : {}) });
}

/** The part of a sonic-boom destination the batch uses. */
export interface LineSink { write(s: string): unknown; flushSync(): void; readonly destroyed?: boolean }

/**
 * Lines gathered in an array and handed to the sink as one string of at least `minBytes`, or every `ms` while any are
 * waiting (never when none are). sonic-boom's own batching (`minLength`) measured its whole pending buffer with
 * Buffer.byteLength on every line, flattening the concatenated string each time (≈ 3 KB copied per session), and its
 * periodicFlush wrote even when empty (an empty write through the thread pool, four times a second on an idle proxy).
 * The sink (minLength 0) writes each batch at once; on exit what waits is written synchronously.
 */
export class LineBatch {
  private parts: string[] = [];
  private bytes = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly sink: LineSink, private readonly minBytes: number, ms: number) {
    this.timer = setInterval(() => this.flush(), ms);
    this.timer.unref();
  }

  /** Waiting lines, string length (tests). */
  get pending(): number { return this.bytes; }

  write(line: string): boolean {
    this.parts.push(line);
    this.bytes += line.length;
    if (this.bytes >= this.minBytes) this.flush();
    return true;
  }

  flush(): void {
    if (this.bytes === 0) return;
    const text = this.parts.length === 1 ? this.parts[0]! : this.parts.join('');
    this.parts = [];
    this.bytes = 0;
    // After pino's own exit hook ended the stream (beforeExit), the last lines still go out, synchronously.
    if (this.sink.destroyed === true) { try { writeSync(1, text); } catch { /* stdout gone */ } return; }
    this.sink.write(text);
  }

  flushSync(): void {
    this.flush();
    if (this.sink.destroyed !== true) this.sink.flushSync();
  }

  stop(): void { clearInterval(this.timer); }
}

/**
 * pino's `isoTime` (`,"time":"<ISO 8601 UTC>"`) without a Date and toISOString per line (≈ 3 µs each on the 2-core
 * bench VM, two lines per session): the text up to the second is made once per second, the milliseconds appended.
 */
let secondStart = Number.NaN;
let secondText = '';
export function isoTime(now: number): string {
  let ms = now - secondStart;
  if (!(ms >= 0 && ms < 1000)) {
    const iso = new Date(now).toISOString();
    if (iso.length !== 24) return `,"time":"${iso}"`; // a year outside 0000–9999 (never from a real clock)
    secondStart = now - (((now % 1000) + 1000) % 1000);
    secondText = `,"time":"${iso.slice(0, 20)}`;
    ms = now - secondStart;
  }
  return `${secondText}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
}

function stdoutDestination(): pino.DestinationStream {
  const batch = new LineBatch(pino.destination({ dest: 1, sync: false, minLength: 0 }), LOG_BATCH_BYTES, LOG_FLUSH_MS);
  process.once('exit', () => batch.flushSync());
  return batch;
}

export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  const root = pino({
    level,
    base: { pid: process.pid },
    formatters: { log: scrubSecrets, bindings: scrubSecrets },
    timestamp: () => isoTime(Date.now()),
  }, (destination ?? stdoutDestination()) as pino.DestinationStream);
  // pino applies the bindings formatter to the root only; children (which inherit from the root) get theirs scrubbed here.
  type ChildFn = (this: unknown, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  const rootChild = root.child as unknown as ChildFn;
  const scrubbedChild: ChildFn = function (this: unknown, bindings, options) { return rootChild.call(this, scrubSecrets(bindings), options); };
  root.child = scrubbedChild as unknown as typeof root.child;
  return root;
}

/** A logger that drops everything (unit tests, CLI commands that print their own output). */
export const silentLogger: Logger = pino({ level: 'silent' });
