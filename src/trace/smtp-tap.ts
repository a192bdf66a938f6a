// Owns copying an SMTP/LMTP client dialogue (smtp-server owns the socket) into its SessionTrace: a 'data' listener, `write` wrapped, message data cut to a KiB.
// Must not change, delay or reorder a byte either way, nor record ciphertext (it lets go of a socket at STARTTLS).
import type { SessionTrace } from './session-trace.js';
import { RELAY_TRACE_BYTES } from './session-trace.js';

/** The socket surface the tap needs (a net.Socket or tls.TLSSocket). */
export interface TappableSocket {
  write: (...args: never[]) => boolean;
  prependListener(event: 'data', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'data', listener: (chunk: Buffer) => void): unknown;
}

/** RFC 5321 §4.1.1.4: the end of message data. */
const END_OF_DATA = Buffer.from('\r\n.\r\n');
const STARTTLS_LINE = /(?:^|\n)STARTTLS[ \t]*\r?\n$/i;

/**
 * One SMTP connection's tap. `attach` it to the plain socket before smtp-server reads from it, and again to the TLS socket
 * after STARTTLS (or to the implicit-TLS socket). Records nothing while the session's trace is off.
 */
export class SmtpTraceTap {
  private detach: (() => void) | undefined;
  /** Between a 354 reply and the end-of-data line: client bytes are message content. */
  private inData = false;
  private dataLogged = 0;
  /** The last bytes of message data seen (the end-of-data line may be split across reads). */
  private dataTail: Buffer = Buffer.alloc(0);
  private startTlsAsked = false;

  constructor(private readonly trace: SessionTrace) {}

  attach(socket: TappableSocket): void {
    this.detach?.();
    const onData = (chunk: Buffer): void => { if (this.trace.on) this.fromClient(chunk); };
    const target = socket as unknown as Record<string, unknown>;
    const original = target['write'] as (this: unknown, ...args: unknown[]) => unknown;
    const tap = this;
    target['write'] = function (this: unknown, d: unknown, ...rest: unknown[]) {
      if (tap.trace.on && (typeof d === 'string' || Buffer.isBuffer(d))) tap.toClient(d);
      return original.call(this, d, ...rest);
    };
    socket.prependListener('data', onData);
    this.detach = () => {
      socket.removeListener('data', onData);
      if (target['write'] !== original) delete target['write'];
      this.detach = undefined;
    };
  }

  /** Stop tapping (the connection ended). */
  close(): void { this.detach?.(); }

  private fromClient(chunk: Buffer): void {
    if (!this.inData) {
      this.trace.fromClient(chunk);
      // RFC 3207 §4: nothing follows STARTTLS until the server's answer; after a 220 the bytes are TLS.
      if (STARTTLS_LINE.test(chunk.toString('latin1'))) this.startTlsAsked = true;
      return;
    }
    const scan = Buffer.concat([this.dataTail, chunk]);
    const end = scan.indexOf(END_OF_DATA);
    const body = end < 0 ? chunk : chunk.subarray(0, Math.max(0, end + END_OF_DATA.length - this.dataTail.length));
    const room = RELAY_TRACE_BYTES - this.dataLogged;
    if (room > 0) {
      const part = body.subarray(0, room);
      this.dataLogged += part.length;
      this.trace.fromClient(part);
      // Past the first KiB the message is not recorded (unless it ended exactly there).
      const ended = end >= 0 && part.length === body.length;
      if (this.dataLogged >= RELAY_TRACE_BYTES && !ended) this.trace.cutClient(`[message data after the first ${RELAY_TRACE_BYTES} bytes not logged]`);
    }
    if (end < 0) {
      this.dataTail = scan.subarray(Math.max(0, scan.length - (END_OF_DATA.length - 1)));
      return;
    }
    this.inData = false;
    this.dataTail = Buffer.alloc(0);
    const after = chunk.subarray(body.length);
    if (after.length) this.fromClient(after);
  }

  private toClient(d: string | Buffer): void {
    this.trace.toClient(d);
    const text = typeof d === 'string' ? d : d.toString('latin1');
    if (/^354[ -]/m.test(text)) {
      this.inData = true;
      this.dataLogged = 0;
      this.dataTail = Buffer.from('\r\n');
    }
    if (this.startTlsAsked && /^\d{3} /m.test(text)) {
      this.startTlsAsked = false;
      if (text.startsWith('220')) this.detach?.();
    }
  }
}
