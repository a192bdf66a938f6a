// Owns the HAProxy agent-check responder: one line (`up ready 100%`, `drain`, `down`) per TCP connection, from this process's readiness.
// Must not read backend health (readiness is per proxy, like /readyz) nor keep connections open.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Readiness } from './http.js';

/**
 * The agent's answer (HAProxy configuration manual, "agent-check"): draining or instance maintenance → `drain`
 * (weight 0, existing sessions stay), otherwise not ready → `down`, ready → `up ready` with the weight restored.
 * `up` alone sets only the operational state; HAProxy keeps a server it drained in DRAIN until the agent says `ready`.
 */
export function agentReply(r: Readiness, weightPercent = 100): string {
  if (r.draining || r.maintenance) return 'drain\n';
  if (!r.ready) return 'down\n';
  return `up ready ${Math.max(0, Math.min(100, Math.round(weightPercent)))}%\n`;
}

export interface AgentCheckOptions {
  address: string;
  port: number;
  readiness(): Readiness | Promise<Readiness>;
  weightPercent?: number;
  logger?: Logger;
}

export async function startAgentCheck(opts: AgentCheckOptions): Promise<{ server: net.Server; port: number; close(): Promise<void> }> {
  const log = opts.logger ?? silentLogger;
  const server = net.createServer((sock) => {
    sock.setTimeout(2000, () => sock.destroy());
    sock.on('error', () => undefined);
    Promise.resolve()
      .then(() => opts.readiness())
      .then(
        (r) => agentReply(r, opts.weightPercent),
        (e: unknown) => {
          log.error({ event: 'agent_check_error', err: e instanceof Error ? e.message : String(e) }, 'readiness callback failed');
          return 'down\n';
        },
      )
      .then((line) => sock.end(line));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, () => { server.off('error', reject); resolve(); });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
