// Owns a cuttable loopback TCP link for tests: one process's connections to a fixture go through it, and the test cuts
// that process's link (open connections reset, new ones closed at once) while everyone else still reaches the fixture.
// Must not look at the bytes it forwards.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface TcpLink {
  port: number;
  /** Reset every connection through the link and close new ones at once until restore(). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpLink(targetPort: number, host = '127.0.0.1'): Promise<TcpLink> {
  const sockets = new Set<Socket>();
  let open = true;
  const track = (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); };
  const server = createServer((client) => {
    if (!open) { client.resetAndDestroy(); return; }
    const upstream = connect({ host, port: targetPort });
    for (const s of [client, upstream]) {
      track(s);
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => {
      open = false;
      for (const s of sockets) s.resetAndDestroy();
    },
    restore: () => { open = true; },
    close: async () => {
      open = false;
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
