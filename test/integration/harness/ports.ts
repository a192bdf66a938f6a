// Owns loopback port allocation and waiting for ports to listen or refuse (polled every 50 ms).
// Must not start or stop any process; it only observes sockets.
import { createServer, connect, type Server } from 'node:net';
import { readFileSync } from 'node:fs';

export const POLL_MS = 50;

/** Allocate `count` distinct free ports on 127.0.0.1 (all held open together, then released). */
export async function allocatePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => resolve());
      });
    }
    return servers.map((s) => {
      const addr = s.address();
      if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
      return addr.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

function listeningFromProc(): Set<number> | undefined {
  try {
    const text = readFileSync('/proc/net/tcp', 'utf8');
    const ports = new Set<number>();
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== '0A') continue; // 0A = TCP_LISTEN
      const [addr, portHex] = cols[1]!.split(':');
      // 0100007F = 127.0.0.1, 00000000 = 0.0.0.0 (little-endian hex).
      if (addr === '0100007F' || addr === '00000000') ports.add(parseInt(portHex!, 16));
    }
    return ports;
  } catch {
    return undefined;
  }
}

function probeConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/**
 * Whether something listens on 127.0.0.1:port. Reads /proc/net/tcp so that polling creates no
 * connections (no "disconnected before greeting" noise in server logs); connects when /proc is absent.
 */
export async function isListening(port: number): Promise<boolean> {
  const set = listeningFromProc();
  if (set !== undefined) return set.has(port);
  return probeConnect(port);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `check` is true; on timeout throws with `describe()` in the message. */
export async function pollUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await sleep(POLL_MS);
  }
}

export async function waitListening(ports: number[], timeoutMs: number, what: string, extra: () => string = () => ''): Promise<void> {
  await pollUntil(
    async () => {
      for (const p of ports) if (!(await isListening(p))) return false;
      return true;
    },
    timeoutMs,
    () => `${what} not listening on ${ports.join(',')} ${extra()}`,
  );
}

export async function waitRefusing(ports: number[], timeoutMs: number, what: string): Promise<void> {
  await pollUntil(
    async () => {
      for (const p of ports) if (await isListening(p)) return false;
      return true;
    },
    timeoutMs,
    () => `${what} still listening on one of ${ports.join(',')}`,
  );
}
