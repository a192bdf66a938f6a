// Owns the in-process SMTP sink that the backends' submission services relay to: accepts and stores every message.
// Must not relay or inspect mail beyond recording envelope and raw bytes.
import { SMTPServer } from 'smtp-server';

export interface SinkMessage {
  from: string;
  to: string[];
  raw: Buffer;
  /** The client's EHLO name and address, as the sink saw them. */
  heloName: string;
  remoteAddress: string;
}

export interface SmtpSink {
  port: number;
  messages: SinkMessage[];
  /** Resolves once at least `n` messages have arrived in total; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const messages: SinkMessage[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    name: 'sink.example.test',
    authOptional: true,
    // Dovecot's relay client uses plain SMTP (submission_relay_ssl = no); keep the dialogue minimal.
    hideSTARTTLS: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    size: 50 * 1024 * 1024,
    closeTimeout: 1000,
    onAuth(_auth, _session, callback) {
      callback(null, { user: 'sink' });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
        messages.push({
          from,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          heloName: session.hostNameAppearsAs,
          remoteAddress: session.remoteAddress,
        });
        for (const w of [...waiters]) w();
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.on('error', () => undefined);
  const addr = server.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('smtp sink has no port');

  return {
    port: addr.port,
    messages,
    waitFor(n, timeoutMs) {
      if (messages.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (messages.length >= n) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`smtp sink: ${messages.length} of ${n} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
