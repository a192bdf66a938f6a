// Owns loopback port allocation and waiting for ports to listen or refuse (polled every 50 ms).
// Must not start or stop any process; it only observes sockets.
import { createServer, connect, type Server } from 'node:net';
import { readFileSync } from 'node:fs';

export const POLL_MS = 50;

/** The kernel's ephemeral range (bind to port 0 and outgoing connections' source ports come from it). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo!, hi!];
  } catch { /* not Linux: fall through */ }
  return [32768, 60999];
}

/** Below the ephemeral range and above the demo's fixed ports (10xxx, 18025). */
const PICK_LOW = 20000;
const handedOut = new Set<number>();

function tryListen(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(srv));
  });
}

/**
 * Allocate `count` distinct free ports on 127.0.0.1 (all held open together, then released). Ports are picked at
 * random *below* the kernel's ephemeral range when it leaves room, so that between release and the fixture's own
 * bind no outgoing connection (source port) and no other bind-to-0 can take them; a port is not handed out twice
 * in one test process. Falls back to port 0 when the range leaves no room.
 */
export async function allocatePorts(count: number): Promise<number[]> {
  const [ephemeralLow] = ephemeralRange();
  const servers: Server[] = [];
  try {
    for (let attempts = 0; servers.length < count; attempts++) {
      const room = ephemeralLow - PICK_LOW;
      const port = room > 1000 && attempts < 2000 ? PICK_LOW + Math.floor(Math.random() * room) : 0;
      if (port !== 0 && handedOut.has(port)) continue;
      const srv = await tryListen(port);
      if (srv === undefined) {
        if (port === 0) throw new Error('allocatePorts: cannot bind 127.0.0.1:0');
        continue;
      }
      servers.push(srv);
    }
    return servers.map((s) => {
      const addr = s.address();
      if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
      handedOut.add(addr.port);
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
