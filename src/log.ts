// Owns the one structured logger (pino JSON) and the rule that secrets never reach a log line.
// Must not decide what to log; modules call child loggers with their connection id and phase.
import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Log lines are gathered into writes of at least LOG_BATCH_BYTES, and whatever is gathered is written at least every
 * LOG_FLUSH_MS: one write per line (two per session) cost the proxy more CPU than the rest of a login (each async write
 * is a hand-off to the thread pool). Buffered lines are written synchronously on exit (pino's exit hook); a SIGKILL
 * loses at most LOG_FLUSH_MS of them.
 */
const LOG_BATCH_BYTES = 4096;
const LOG_FLUSH_MS = 250;

const REDACT = ['password', 'pass', 'bindPassword', 'masterPassword', 'token', 'credentials.password', '*.password', 'authorization'];

export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, (destination ?? pino.destination({ dest: 1, sync: false, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_MS })) as pino.DestinationStream);
}

/** A logger that drops everything (unit tests, CLI commands that print their own output). */
export const silentLogger: Logger = pino({ level: 'silent' });
