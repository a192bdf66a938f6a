// Owns in-memory stand-ins for whole-session unit tests: a connected socket pair, a dialer to scripted backends, handler deps.
// Must not open real sockets or use real time (the FakeClock drives every proxy timer).
import { createBackendGuard } from '../../../src/proxy/backend-guard.js';
import { Duplex } from 'node:stream';
import { PoolRouter } from '../../../src/pools/pool-router.js';
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { configSchema, type Config } from '../../../src/config/schema.js';
import type { Directory } from '../../../src/directory/directory.js';
import type { BackendGate } from '../../../src/health/gate.js';
import type { Route } from '../../../src/directory/backends.js';
import type { Dial } from '../../../src/proxy/backend-connect.js';
import type { HandlerDeps, AcceptedConnection } from '../../../src/proxy/protocol.js';
import { SessionRegistry } from '../../../src/proxy/sessions.js';
import { AuthPenalty } from '../../../src/proxy/auth-penalty.js';
import { FakeClock } from '../health/fake-clock.js';

/** One end of an in-memory connection; what is written comes out of the peer. Enough of net.Socket for the proxy. */
export class FakeSocket extends Duplex {
  peer!: FakeSocket;
  private eof = false;
  readonly written: string[] = [];
  constructor() { super({ allowHalfOpen: false }); }
  override _read(): void { /* data is pushed by the peer */ }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.written.push(chunk.toString('latin1'));
    this.peer.deliver(chunk);
    cb();
  }
  override _final(cb: (e?: Error | null) => void): void { this.peer.deliver(null); cb(); }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void { this.peer.deliver(null); cb(err); }
  private deliver(chunk: Buffer | null): void {
    if (this.eof || this.destroyed) return;
    if (chunk === null) this.eof = true;
    this.push(chunk);
  }
  /** net.Socket's view of the connection (smtp-server writes only while 'open'). */
  get readyState(): string { return this.destroyed ? 'closed' : this.writable ? 'open' : 'readOnly'; }
  setTimeout(): this { return this; }
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
  /** Everything this end has read so far, as text (collected by `collect`). */
  text = '';
  collect(): this { this.on('data', (d: Buffer) => { this.text += d.toString('latin1'); }); return this; }
  asSocket(): Socket { return this as unknown as Socket; }
}

export function socketPair(): [FakeSocket, FakeSocket] {
  const a = new FakeSocket();
  const b = new FakeSocket();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** A backend that answers each complete line it reads with `reply(line)` (undefined: silence; null: close the connection). */
export type Script = { greeting?: string; reply(line: string): string | undefined | null };

/** `refuse`: the connect fails with `code` (default ECONNREFUSED; EMFILE: this host is out of descriptors). */
export type Behaviour = { kind: 'refuse'; code?: string } | { kind: 'silent' } | { kind: 'script'; script: Script };

/** An IMAP backend that greets with LITERAL+ and ID, accepts every LOGIN and answers NOOP (whole-session tests share it). */
export const IMAP_BACKEND: Behaviour = {
  kind: 'script',
  script: {
    greeting: '* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] backend ready\r\n',
    reply: (line) => {
      const [tag, cmd] = line.split(' ');
      if (cmd === 'LOGIN') return `${tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`;
      if (cmd === 'NOOP') return `${tag} OK NOOP from backend\r\n`;
      return undefined;
    },
  },
};

/** A Dial to in-memory backends by port; records every connection's backend end. */
export function fakeDialer(byPort: Record<number, Behaviour>): { dial: Dial; backends: FakeSocket[] } {
  const backends: FakeSocket[] = [];
  const dial: Dial = ({ port }) => {
    const [proxySide, backendSide] = socketPair();
    const b = byPort[port] ?? { kind: 'refuse' };
    queueMicrotask(() => {
      if (b.kind === 'refuse') { const code = b.code ?? 'ECONNREFUSED'; proxySide.emit('error', Object.assign(new Error(`connect ${code}`), { code })); return; }
      backends.push(backendSide);
      backendSide.collect();
      proxySide.emit('connect');
      if (b.kind === 'silent') return;
      const { script } = b;
      if (script.greeting !== undefined) backendSide.write(script.greeting);
      let buf = '';
      backendSide.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          const out = script.reply(line);
          if (out === null) { backendSide.destroy(); return; }
          if (out !== undefined && !backendSide.destroyed) backendSide.write(out);
        }
      });
    });
    return proxySide.asSocket();
  };
  return { dial, backends };
}

/** A gate that admits everything and records reports. */
export function recordingGate(): BackendGate & { reports: Array<[string, 'ok' | 'fail' | 'hang']> } {
  const reports: Array<[string, 'ok' | 'fail' | 'hang']> = [];
  return { reports, admit: (r: Route) => r, report: (r: Route, o) => { reports.push([r.backend, o]); } };
}

/** alice/secret on backend "b1" (host b1.test); everyone else fails. */
export const directory: Directory = {
  authenticate: async (c: { user: string; password: string }) => (c.user === 'alice' && c.password === 'secret' ? { ok: true, account: { login: 'alice', host: 'b1', mail: 'alice@example.org' } } : { ok: false }),
  lookupRecipient: async (address: string) => (address.toLowerCase() === 'alice@example.org' ? { login: 'alice', host: 'b1', mail: 'alice@example.org' } : null),
  close: async () => undefined,
} as unknown as Directory;

export const PORTS = { imap: 1143, pop3: 1110, submission: 1587, lmtp: 1024 } as const;

export function testConfig(over: Record<string, unknown> = {}): Config {
  return configSchema.parse({
    listeners: [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }],
    directory: { type: 'static', static: { file: '/nonexistent' } },
    imap: { requireTlsForAuth: false, limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 100, preAuthDeadlineMs: 30_000 } },
    pop3: { requireTlsForAuth: false, limits: { authFailureDelayMs: 100, authFailureMaxDelayMs: 100, preAuthDeadlineMs: 30_000 } },
    smtp: { requireTlsForAuth: false, authFailureDelayMs: 100, authFailureMaxDelayMs: 100 },
    backendLogin: { backendLoginBudgetMs: 5000, connectTimeoutMs: 1000 },
    backends: { b1: { host: 'b1.test', imap: { port: PORTS.imap, tls: 'none' }, pop3: { port: PORTS.pop3, tls: 'none' }, submission: { port: PORTS.submission, tls: 'none' }, lmtp: { port: PORTS.lmtp, tls: 'none' }, trustsProxy: false } },
    routing: { defaultBackend: 'b1' },
    health: { enabled: false },
    admin: { enabled: false },
    ...over,
  });
}

export function handlerDeps(config: Config, dial: Dial, clock: FakeClock, gate: BackendGate = recordingGate()): HandlerDeps {
  const sessions = new SessionRegistry();
  return {
    config: () => config, directory: () => directory, gate, sessions, logger: pino({ level: 'silent' }),
    tls: () => undefined, penalty: new AuthPenalty(), guard: createBackendGuard(() => []), clock, dial,
    pools: new PoolRouter({ config: () => config, sessions, now: () => clock.now() }),
  };
}

let seq = 0;
export function accepted(protocol: 'imap' | 'pop3' | 'submission' | 'smtp'): AcceptedConnection {
  return {
    id: `c${++seq}`,
    client: { address: '192.0.2.9', port: 40000 + seq, localAddress: '127.0.0.1', localPort: 143 },
    listener: { protocol, address: '127.0.0.1', port: 0, tls: 'none' } as AcceptedConnection['listener'],
  };
}
