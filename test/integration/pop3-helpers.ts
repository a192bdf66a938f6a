// Owns small raw-POP3 conveniences for integration tests (greet, one-line and multi-line replies, USER/PASS, marker search) over LineClient.
// Must not assert protocol behaviour beyond what each helper names; tests do the asserting.
import assert from 'node:assert/strict';
import { LineClient } from './harness/line-client.js';

export async function greet(port: number, opts: { tls?: boolean; ca?: string | Buffer; localAddress?: string } = {}): Promise<{ c: LineClient; greeting: string }> {
  const c = await LineClient.connect(port, opts);
  const greeting = await c.readLine();
  return { c, greeting };
}

/** Send one command and read its one-line reply. */
export async function cmd(c: LineClient, line: string, timeoutMs = 5000): Promise<string> {
  c.send(line);
  return c.readLine(timeoutMs);
}

const TERMINATOR = Buffer.from('\r\n.\r\n');

/**
 * The rest of a multi-line response after its status line, raw bytes up to and including the
 * terminating ".\r\n" (RFC 1939 §3), dot-stuffing left as it came over the wire.
 */
export async function readMultilineBody(c: LineClient, timeoutMs = 30_000): Promise<Buffer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = c.pending();
    // The body may be empty: the terminator then starts the buffer.
    if (pending.subarray(0, 3).equals(Buffer.from('.\r\n'))) return c.readBytes(3);
    const at = pending.indexOf(TERMINATOR);
    if (at >= 0) return c.readBytes(at + TERMINATOR.length);
    if (c.isClosed) throw new Error(`closed before end of multi-line response; got ${pending.length} bytes`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for end of multi-line response; got ${pending.length} bytes`);
    // LineClient appends in its own earlier 'data' listener, so pending() is current when this fires.
    await new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(t); c.socket.off('data', done); c.socket.off('close', done); resolve(); };
      const t = setTimeout(done, left);
      c.socket.once('data', done);
      c.socket.once('close', done);
    });
  }
}

/** A multi-line command: its status line and (if +OK) its body as text. */
export async function multi(c: LineClient, line: string, timeoutMs = 10_000): Promise<{ status: string; body: string }> {
  const status = await cmd(c, line, timeoutMs);
  if (!status.startsWith('+OK')) return { status, body: '' };
  const body = (await readMultilineBody(c, timeoutMs)).toString('utf8');
  return { status, body };
}

/** USER then PASS (PASS takes the rest of the line, RFC 1939 §7); returns PASS's reply. */
export async function userPass(c: LineClient, user: string, password: string): Promise<string> {
  assert.match(await cmd(c, `USER ${user}`), /^\+OK/);
  return cmd(c, `PASS ${password}`);
}

/** Message numbers and sizes from LIST. */
export async function list(c: LineClient): Promise<Array<{ n: number; size: number }>> {
  const { status, body } = await multi(c, 'LIST');
  assert.match(status, /^\+OK/, status);
  return [...body.matchAll(/^(\d+) (\d+)\r$/gm)].map((m) => ({ n: Number(m[1]), size: Number(m[2]) }));
}

/** Every message carrying an X-Test-Backend header, found with TOP n 0 (headers only): number and header value. */
export async function markerMessages(c: LineClient): Promise<Array<{ n: number; backend: string }>> {
  const found: Array<{ n: number; backend: string }> = [];
  for (const { n } of await list(c)) {
    const { status, body } = await multi(c, `TOP ${n} 0`);
    assert.match(status, /^\+OK/, status);
    const m = /^X-Test-Backend: (\S+)\r$/m.exec(body);
    if (m) found.push({ n, backend: m[1]! });
  }
  return found;
}

/** The distinct X-Test-Backend values in the mailbox. */
export async function markers(c: LineClient): Promise<string[]> {
  return [...new Set((await markerMessages(c)).map((m) => m.backend))];
}

export function b64(s: string): string { return Buffer.from(s, 'utf8').toString('base64'); }
