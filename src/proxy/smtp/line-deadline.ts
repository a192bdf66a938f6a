// Owns the slow-line bound of one SMTP client connection: each line (a command or a message line) must arrive whole
// within a time from its first byte. Must not parse SMTP nor close anything itself: it calls onExpire, once.
import type { Duplex } from 'node:stream';
import type { Clock } from '../../core/clock.js';

const LF = 10;

/**
 * smtp-server's inactivity timer (socketTimeout) restarts at every byte, so a client sending one byte a second held a
 * connection for as long as it liked (a 4 KiB command line: 68 min; short NOOPs: for ever). This bounds every line
 * instead, as Postfix's smtpd_per_record_deadline does. attach() follows the connection onto its TLS socket.
 */
export class LineDeadline {
  private timer: unknown;
  private socket: Duplex | undefined;
  private expired = false;
  private readonly onData = (chunk: Buffer | string): void => {
    if (chunk.length === 0) return;
    const nl = typeof chunk === 'string' ? chunk.lastIndexOf('\n') : chunk.lastIndexOf(LF);
    if (nl === chunk.length - 1) { this.stop(); return; }
    // A new partial line starts in this chunk (or the first one does): its clock starts now; else the old one runs on.
    if (nl >= 0 || this.timer === undefined) this.start();
  };
  private readonly onClose = (): void => { this.detach(); };

  constructor(private readonly ms: number, private readonly clock: Clock, private readonly onExpire: () => void) {}

  attach(socket: Duplex): void {
    this.detach();
    this.socket = socket;
    socket.on('data', this.onData);
    socket.once('close', this.onClose);
  }

  detach(): void {
    this.stop();
    this.socket?.off('data', this.onData);
    this.socket?.off('close', this.onClose);
    this.socket = undefined;
  }

  private start(): void {
    this.stop();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.expired) return;
      this.expired = true;
      this.onExpire();
    }, this.ms);
  }

  private stop(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
