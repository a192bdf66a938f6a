// Owns small builders shared by the health unit tests (configs parsed through the real schema).
// Must not start servers or touch real backends.
import { Duplex } from 'node:stream';
import { configSchema, type Config } from '../../../src/config/schema.js';

export function testConfig(over: { backends?: Record<string, unknown>; health?: Record<string, unknown>; admin?: Record<string, unknown> } = {}): Config {
  return configSchema.parse({
    listeners: [{ protocol: 'imap', port: 0, tls: 'none' }],
    directory: { type: 'static', static: { file: 'users.yaml' } },
    backends: over.backends ?? {
      a: { host: '127.0.0.1', imap: { port: 1143 }, pop3: { port: 1110 }, standby: 'b' },
      b: { host: '127.0.0.2', imap: { port: 2143 }, pop3: { port: 2110 } },
      c: { host: '127.0.0.3', imap: { port: 3143 } },
    },
    health: { rise: 2, fall: 2, trickleIntervalMs: 1000, rideThroughMs: 0, ...(over.health ?? {}) },
    admin: over.admin ?? {},
  });
}

/** A socket whose server side is scripted by the test. */
export class FakeSocket extends Duplex {
  written = '';
  ended = false;
  override _read(): void { /* data is pushed by serve() */ }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void { this.written += chunk.toString('latin1'); cb(); }
  override _final(cb: () => void): void { this.ended = true; cb(); }
  serve(text: string): void { this.push(Buffer.from(text, 'latin1')); }
}

