// Owns the benchmark's IMAP load client: raw sockets reading into one large shared buffer, tagged-reply waits, byte counting.
// Must not parse message data: a FETCH is counted byte by byte until its tagged reply, only the tail of each read is looked at.
import { connect, type Socket } from 'node:net';

/**
 * Every bench connection reads into this one buffer (4 MiB, so a read takes whatever the kernel has queued):
 * a read is consumed synchronously in the callback (counted, or copied into a short reply string), so sharing is safe
 * and nothing is allocated per read.
 */
const SHARED = Buffer.allocUnsafe(4 << 20);
/** Bytes kept from the end of the previous read, to find a tagged line split across reads. */
const TAIL = 512;
let tagSeq = 0;

interface Waiter { tag: string; resolve: (text: string) => void; reject: (e: Error) => void; counting: boolean }

export class ImapConn {
  /** Reply text collected while waiting for a small reply (latin1). */
  private text = '';
  /** Bytes counted while waiting for a counted (FETCH) reply. */
  counted = 0;
  private waiter: Waiter | undefined;
  private greeted: ((line: string) => void) | undefined;
  private failed: Error | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {}

  /** Connect and wait for the greeting line. */
  static open(port: number, timeoutMs = 10_000): Promise<ImapConn> {
    return new Promise((resolve, reject) => {
      let conn: ImapConn | undefined = undefined;
      const socket = connect({
        host: '127.0.0.1', port, noDelay: true,
        onread: { buffer: SHARED, callback: (n: number, buf: Uint8Array) => { conn?.onRead(n, buf as Buffer); return true; } },
      });
      conn = new ImapConn(socket);
      const c = conn;
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no greeting on ${port} in ${timeoutMs} ms`)); }, timeoutMs);
      c.greeted = () => { clearTimeout(timer); resolve(c); };
      socket.on('error', (e) => { clearTimeout(timer); c.fail(e); reject(e); });
      socket.on('close', () => { c.closed = true; c.fail(new Error('connection closed')); });
    });
  }

  private fail(e: Error): void {
    this.failed ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
  }

  private onRead(n: number, buf: Buffer): void {
    if (this.greeted) {
      this.text += buf.toString('latin1', 0, n);
      const nl = this.text.indexOf('\r\n');
      if (nl < 0) return;
      const g = this.greeted;
      this.greeted = undefined;
      const line = this.text.slice(0, nl);
      this.text = this.text.slice(nl + 2);
      g(line);
      return;
    }
    const w = this.waiter;
    if (!w) return;
    if (!w.counting) {
      this.text += buf.toString('latin1', 0, n);
      const end = this.tagged(this.text, w.tag);
      if (end >= 0) { const t = this.text; this.text = ''; this.waiter = undefined; w.resolve(t); }
      return;
    }
    this.counted += n;
    // Look only at the previous tail plus the end of this read: a tagged line is short and ends the reply.
    const look = this.text + buf.toString('latin1', Math.max(0, n - TAIL), n);
    const end = this.tagged(look, w.tag);
    if (end >= 0) { this.text = ''; this.waiter = undefined; w.resolve(look.slice(end)); return; }
    this.text = look.length > TAIL ? look.slice(-TAIL) : look;
  }

  /** Index where the tagged reply line starts, when it is complete; -1 otherwise. */
  private tagged(text: string, tag: string): number {
    if (!text.endsWith('\r\n')) return -1;
    if (text.startsWith(`${tag} `)) return 0;
    const at = text.lastIndexOf(`\r\n${tag} `);
    return at < 0 ? -1 : at + 2;
  }

  private wait(tag: string, counting: boolean, timeoutMs: number): Promise<string> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiter = undefined; reject(new Error(`no reply to ${tag} in ${timeoutMs} ms`)); }, timeoutMs);
      this.waiter = {
        tag, counting,
        resolve: (t) => { clearTimeout(timer); resolve(t); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  /** Send one command, resolve with the whole reply text up to and including the tagged line. */
  command(line: string, timeoutMs = 30_000): Promise<string> {
    const tag = `T${++tagSeq}`;
    this.text = '';
    const p = this.wait(tag, false, timeoutMs);
    this.socket.write(`${tag} ${line}\r\n`);
    return p;
  }

  /** Send one command and count reply bytes until its tagged line; resolves with that line. */
  countReply(line: string, timeoutMs = 60_000): Promise<string> {
    const tag = `T${++tagSeq}`;
    this.text = '';
    this.counted = 0;
    const p = this.wait(tag, true, timeoutMs);
    this.socket.write(`${tag} ${line}\r\n`);
    return p;
  }

  async login(user: string, password: string): Promise<void> {
    const r = await this.command(`LOGIN ${user} ${password}`);
    if (!/(^|\r\n)T\d+ OK/.test(r)) throw new Error(`login failed: ${r.slice(-200)}`);
  }

  close(): void { this.closed = true; this.socket.destroy(); }
}

/** A logged-in connection (LOGIN, optionally SELECT INBOX). */
export async function openLoggedIn(port: number, user: string, password: string, select = false): Promise<ImapConn> {
  const c = await ImapConn.open(port);
  try {
    await c.login(user, password);
    if (select) await c.command('SELECT INBOX');
    return c;
  } catch (e) { c.close(); throw e; }
}
