// Owns the optional metrics-only HTTP listener (admin.metrics): GET /metrics and /healthz on their own address and port, no token.
// Must not serve anything that changes state or shows sessions: whoever reaches it can read metrics, nothing more.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';

export interface MetricsListenerOptions {
  address: string;
  port: number;
  metrics(): Promise<{ contentType: string; body: string }>;
  logger: Logger;
}

export interface MetricsListener { port: number; close(): Promise<void> }

/** A Prometheus scrape needs no admin token here, because nothing but metrics and liveness can be reached. */
export async function startMetricsListener(opts: MetricsListenerOptions): Promise<MetricsListener> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '') || '/';
    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    if (path === '/healthz') return send(200, 'text/plain; charset=utf-8', 'ok\n');
    if (path !== '/metrics') return send(404, 'text/plain; charset=utf-8', 'only /metrics and /healthz here\n');
    opts.metrics().then((m) => send(200, m.contentType, m.body), (e: unknown) => {
      opts.logger.error({ event: 'metrics_error', err: e instanceof Error ? e.message : String(e) }, 'metrics request failed');
      send(500, 'text/plain; charset=utf-8', 'metrics unavailable\n');
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}
