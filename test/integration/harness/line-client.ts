// Owns a tiny raw TCP/TLS line client for talking IMAP/POP3/SMTP/LMTP to fixtures in tests (buffered reads with timeouts).
// Must not interpret any protocol beyond CRLF lines; callers decide what a reply means.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export class LineClient {
  private buf = Buffer.alloc(0);
  private closed = false;
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: Socket | TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** A client over an already connected socket (e.g. TLS over a stream the test shapes itself). */
  static wrap(socket: Socket | TLSSocket): LineClient {
    return new LineClient(socket);
  }

  static connect(port: number, opts: { tls?: boolean; ca?: string | Buffer; host?: string; timeoutMs?: number; localAddress?: string } = {}): Promise<LineClient> {
    const host = opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      const sock = opts.tls
        ? tlsConnect({ host, port, servername: 'localhost', ca: opts.ca, rejectUnauthorized: opts.ca !== undefined, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) })
        : netConnect({ host, port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, opts.timeoutMs ?? 5000);
      sock.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new LineClient(sock));
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes received and not yet consumed. */
  pending(): Buffer {
    return this.buf;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Send `line` followed by CRLF. */
  send(line: string | Buffer): void {
    this.socket.write(Buffer.concat([Buffer.from(line), Buffer.from('\r\n')]));
  }

  /** Wait until `pred(buffer)` returns a byte count to consume (or -1 for "not yet"); returns the consumed text. */
  private async readWhere(pred: (b: Buffer) => number, timeoutMs: number, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = pred(this.buf);
      if (n >= 0) {
        const out = this.buf.subarray(0, n).toString('utf8');
        this.buf = this.buf.subarray(n);
        return out;
      }
      if (this.closed) throw new Error(`connection closed while waiting for ${what}; got: ${JSON.stringify(this.buf.toString('utf8'))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got: ${JSON.stringify(this.buf.toString('utf8'))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** One line without its CRLF. */
  async readLine(timeoutMs = 5000): Promise<string> {
    const line = await this.readWhere((b) => {
      const i = b.indexOf('\r\n');
      return i < 0 ? -1 : i + 2;
    }, timeoutMs, 'a line');
    return line.slice(0, -2);
  }

  /** Lines until one matches `re` (inclusive); returns all of them joined with CRLF. */
  async readUntil(re: RegExp, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const lines: string[] = [];
    for (;;) {
      const line = await this.readLine(Math.max(1, deadline - Date.now()));
      lines.push(line);
      if (re.test(line)) return lines.join('\r\n');
    }
  }

  /** Resolves true if any byte arrives within `ms`, false otherwise (consumes nothing). */
  async anyDataWithin(ms: number): Promise<boolean> {
    if (this.buf.length > 0) return true;
    try {
      await this.readWhere((b) => (b.length > 0 ? 0 : -1), ms, 'data');
      return true;
    } catch {
      return this.buf.length > 0;
    }
  }

  /** IMAP: send `tag command` and read up to the tagged reply. */
  async command(tag: string, command: string, timeoutMs = 5000): Promise<string> {
    this.send(`${tag} ${command}`);
    return this.readUntil(new RegExp(`^${tag} (OK|NO|BAD)`), timeoutMs);
  }

  /** Exactly `n` bytes (for IMAP literals). */
  async readBytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    let out = Buffer.alloc(0);
    await this.readWhere((b) => {
      if (b.length < n) return -1;
      out = Buffer.from(b.subarray(0, n));
      return n;
    }, timeoutMs, `${n} bytes`);
    return out;
  }

  /** Upgrade this connection to TLS (after a STARTTLS/STLS OK); returns a new client over the TLS socket. */
  startTls(ca?: string | Buffer, timeoutMs = 5000): Promise<LineClient> {
    const raw = this.socket as Socket;
    raw.removeAllListeners('data');
    return new Promise((resolve, reject) => {
      const t = tlsConnect({ socket: raw, servername: 'localhost', ca, rejectUnauthorized: ca !== undefined });
      const timer = setTimeout(() => { t.destroy(); reject(new Error('TLS handshake timed out')); }, timeoutMs);
      t.once('secureConnect', () => { clearTimeout(timer); resolve(new LineClient(t)); });
      t.once('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
