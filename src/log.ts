// Owns the one structured logger (pino JSON) and the rule that secrets never reach a log line.
// Must not decide what to log; modules call child loggers with their connection id and phase.
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = ['password', 'pass', 'bindPassword', 'masterPassword', 'token', 'credentials.password', '*.password', 'authorization'];

export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, (destination ?? pino.destination({ dest: 1, sync: false })) as pino.DestinationStream);
}

/** A logger that drops everything (unit tests, CLI commands that print their own output). */
export const silentLogger: Logger = pino({ level: 'silent' });
