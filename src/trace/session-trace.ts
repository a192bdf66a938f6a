// Owns one session's trace: keeps its pre-login dialogue (only while some trace is active) until the login name is
// known, then logs it, the backend login and the first KiB of each direction after login, redacted, for a traced user.
// Must not change what the session sends or how (taps only), nor log anything for users not being traced.
import type { Logger } from '../log.js';
import type { BackendAction, BackendEvent, BackendLogin } from '../proxy/protocol.js';
import type { TraceEntry, TraceTable } from './table.js';
import { TraceRedactor, type TraceProtocol } from './redact.js';

/** Bytes after login logged per direction. */
export const RELAY_TRACE_BYTES = 1024;
/** Pre-login lines kept while the user is not known yet; older ones are dropped (and counted). */
const MAX_BUFFERED = 200;

/** Who sent the line: the client, the proxy (before login), the proxy to the backend, the backend (login or relay). */
/** The two paths of a relay (client → backend, backend → client) as methods the trace may wrap on one instance. */
export interface RelayPaths { up(d: Buffer): void; down(d: Buffer): void }

export type TraceDir = 'client' | 'proxy' | 'to-backend' | 'from-backend' | 'backend';

interface Pending { dir: TraceDir; line: string; at: number }

export class SessionTrace {
  state: 'off' | 'buffering' | 'tracing' | 'done';
  private entry: TraceEntry | undefined;
  private buffered: Pending[] = [];
  private dropped = 0;
  // Redactors are made when first needed: a session that is not traced (nearly all) never allocates them.
  private clientRedactor: TraceRedactor | undefined;
  private backendRedactor: TraceRedactor | undefined;
  private traceLog: Logger | undefined;

  constructor(private readonly table: TraceTable, private readonly protocol: TraceProtocol, private readonly sessionLog: Logger, private readonly bindings: Record<string, unknown> = {}) {
    this.state = table.any ? 'buffering' : 'off';
  }

  get client(): TraceRedactor { return (this.clientRedactor ??= new TraceRedactor(this.protocol)); }
  private get backend(): TraceRedactor { return (this.backendRedactor ??= new TraceRedactor(this.protocol)); }

  /** Trace records are written whatever log.level says (the operator asked for them); made only for traced sessions. */
  private get log(): Logger {
    this.traceLog ??= this.sessionLog.child({ ...this.bindings, trace: true }, { level: 'info' });
    return this.traceLog;
  }

  /** Tracing this session now (the caller may skip work otherwise). */
  get on(): boolean { return this.state === 'buffering' || this.state === 'tracing'; }

  /** Client → proxy bytes before login. */
  fromClient(bytes: Buffer): void { if (this.on) for (const l of this.client.fromClient(bytes)) this.record('client', l); }
  /** Proxy → client bytes before login (and the login reply). */
  toClient(bytes: Buffer | string): void { if (this.on) for (const l of this.client.fromServer(Buffer.from(bytes))) this.record('proxy', l); }
  /** Proxy → backend bytes of the backend login (the password it sends is redacted like the client's). */
  toBackend(bytes: Buffer | string): void { if (this.state === 'tracing') for (const l of this.backend.fromClient(Buffer.from(bytes))) this.record('to-backend', l); }
  /** Backend → proxy bytes of the backend login. */
  fromBackend(bytes: Buffer | string): void { if (this.state === 'tracing') for (const l of this.backend.fromServer(Buffer.from(bytes))) this.record('from-backend', l); }

  /** Client bytes stop being recorded here (SMTP message data past its first KiB): the unfinished line, then `note`. */
  cutClient(note: string): void {
    if (!this.on) return;
    for (const l of this.client.flush('client')) this.record('client', l);
    this.record('client', note);
  }

  /** A name the session is known by (the login name typed, then the directory's login): starts the trace on a match. */
  identify(...names: Array<string | undefined>): void {
    if (this.state === 'tracing' || this.state === 'done') return;
    const entry = this.table.match(...names);
    if (!entry) return;
    const wasBuffering = this.state === 'buffering';
    this.entry = entry;
    this.state = 'tracing';
    this.log.info({ traced: entry.user, until: new Date(entry.until).toISOString(), ...(wasBuffering ? {} : { note: 'dialogue before the trace started was not recorded' }), ...(this.dropped ? { droppedLines: this.dropped } : {}) }, 'trace: session matched');
    for (const p of this.buffered) this.emit(p.dir, p.line, p.at);
    this.buffered = [];
  }

  /** Login finished: a session that is not traced by now stops recording. */
  loggedIn(): void { if (this.state === 'buffering') { this.state = 'off'; this.buffered = []; } }

  /** A backend login attempt starts (a fresh dialogue for the redactor). */
  backendStart(fields: Record<string, unknown>): void {
    if (this.state !== 'tracing') return;
    this.backendRedactor = new TraceRedactor(this.protocol);
    this.event('trace: backend login', fields);
  }

  /** One structured trace event (route chosen, login result, …) for a traced session. */
  event(msg: string, fields: Record<string, unknown>): void {
    if (this.state === 'tracing' && this.stillActive()) this.log.info({ traced: this.entry?.user, ...fields }, msg);
  }

  /**
   * After login: log the first KiB each way. The relay's `up` (client → backend) and the client socket's `write`
   * (everything the relay sends the client, whether through `down` or its bulk-read path) are wrapped on these
   * instances before the relay starts and restored once their KiB is logged; the bytes themselves are untouched.
   */
  tapRelay(relay: RelayPaths, toClient: { write: (...args: never[]) => boolean }): void {
    if (this.state !== 'tracing') return;
    this.event('trace: relay', { bytesLogged: RELAY_TRACE_BYTES });
    const wrap = (target: Record<string, unknown>, key: 'up' | 'write', dir: TraceDir) => {
      const original = target[key] as (this: unknown, ...args: unknown[]) => unknown;
      let left = RELAY_TRACE_BYTES;
      target[key] = function (this: unknown, d: Buffer, ...rest: unknown[]) {
        if (left > 0 && trace.stillActive()) {
          const part = Buffer.from(d).subarray(0, left);
          left -= part.length;
          for (const l of key === 'up' ? trace.client.fromClient(part) : trace.client.fromServer(part)) trace.emit(dir, l, Date.now());
          if (left <= 0) {
            for (const l of trace.client.flush(key === 'up' ? 'client' : 'server')) trace.emit(dir, l, Date.now());
            trace.emit(dir, `[first ${RELAY_TRACE_BYTES} bytes after login logged]`, Date.now());
          }
        }
        if (left <= 0 || trace.state !== 'tracing') target[key] = original;
        return original.call(this, d, ...rest);
      };
    };
    const trace = this;
    wrap(relay as unknown as Record<string, unknown>, 'up', 'client');
    wrap(toClient as unknown as Record<string, unknown>, 'write', 'backend');
  }

  private record(dir: TraceDir, line: string): void {
    if (this.state === 'tracing') { this.emit(dir, line, Date.now()); return; }
    this.buffered.push({ dir, line, at: Date.now() });
    if (this.buffered.length > MAX_BUFFERED) { this.buffered.shift(); this.dropped++; }
  }

  emit(dir: TraceDir, line: string, at: number): void {
    if (!this.stillActive()) return;
    this.log.info({ traced: this.entry?.user, dir, line, at: new Date(at).toISOString() }, 'trace');
  }

  /** The trace ends with its table entry (expired or stopped): say so once, then record nothing more. */
  stillActive(): boolean {
    if (this.state !== 'tracing') return false;
    if (this.entry && this.table.active(this.entry.user)) return true;
    this.state = 'done';
    this.log.info({ traced: this.entry?.user }, 'trace: ended for this session');
    return false;
  }
}

/** The backend login machine with its lines and actions copied to `trace` (the machine itself is unchanged). */
export function traceBackendLogin(machine: BackendLogin, trace: SessionTrace): BackendLogin {
  if (!trace.on) return machine;
  return {
    step(event: BackendEvent): BackendAction[] {
      if (event.kind === 'line') trace.fromBackend(`${event.line}\r\n`);
      else trace.event('trace: backend TLS ready', {});
      const actions = machine.step(event);
      for (const a of actions) {
        if (a.kind === 'send') trace.toBackend(a.bytes);
        else if (a.kind === 'start-tls') trace.event('trace: backend STARTTLS', {});
        else if (a.kind === 'fail') trace.event('trace: backend login failed', { code: a.error.code, ...(a.error.detail ? { detail: a.error.detail } : {}) });
      }
      return actions;
    },
  };
}
