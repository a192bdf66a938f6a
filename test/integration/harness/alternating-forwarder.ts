// Owns a small TCP forwarder for split-brain tests: one address whose connections go to two backends in turn (failed fencing), or to one.
// Must not look at the bytes it forwards.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface Forwarder {
  port: number;
  /** 'alternate': each new connection goes to the other target (give each proxy its own forwarder); a number: every connection goes to targets[n]. */
  mode: 'alternate' | 0 | 1;
  /** Connections forwarded per target so far. */
  counts: [number, number];
  close(): Promise<void>;
}

export async function startForwarder(targets: [number, number], host = '127.0.0.1'): Promise<Forwarder> {
  const sockets = new Set<Socket>();
  let next = 0;
  const f: Forwarder = { port: 0, mode: 'alternate', counts: [0, 0], close: async () => undefined };
  const server: Server = createServer((client) => {
    const i = f.mode === 'alternate' ? ((next++ % 2) as 0 | 1) : f.mode;
    f.counts[i]++;
    const upstream = connect({ host, port: targets[i] });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  f.port = (server.address() as AddressInfo).port;
  f.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return f;
}
