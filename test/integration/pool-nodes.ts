// Owns the proxy side of the pool tests: N mailproxy children in front of a pool world (PROXY-protocol listeners behind
// HAProxy for IMAP and POP3, plus direct ones), login rounds, and reading each user's one member from the backends' logs.
// Must not assert figures of its own beyond "one member per user per round" (the tests do); placement comes from Dovecot's logs.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { PoolMember } from '../../src/directory/pool-route.js';
import { adminGet, startChildProxy, type ChildProxy } from './child-proxy.js';
import { membersByUser } from './harness/dovecot-sessions.js';
import { startHaproxy, type HaproxyInstance } from './harness/haproxy.js';
import { allocatePorts, pollUntil } from './harness/ports.js';
import type { PoolWorld } from './harness/pool-world.js';
import type { TestUser } from './harness/users.js';
import { imapOnce, pop3Once, runAll, sleep, untilOk } from './pool-clients.js';
import type { RawConfig } from './proxy-fixture.js';

export interface PoolNode {
  name: string;
  ports: { imapPp: number; pop3Pp: number; imap: number; pop3: number };
  proxy: ChildProxy;
}

export interface PoolNodes {
  nodes: PoolNode[];
  hImap: HaproxyInstance;
  hPop3: HaproxyInstance;
  stop(): Promise<void>;
}

export type PoolMembersConfig = Array<string | { backend: string; weight: number }>;

export const eq = (names: readonly string[]): PoolMember[] => names.map((name) => ({ name, weight: 1 }));

/** One proxy's config in front of the pool world: PROXY-protocol and direct IMAP/POP3 listeners, pool `store1`, fast health. */
export function poolProxyConfig(w: PoolWorld, directoryFile: string, name: string, ports: PoolNode['ports'], members: PoolMembersConfig, pool: { moveBackAfterMs: number; drainWindowMs: number }, extra: RawConfig = {}): RawConfig {
  return {
    instanceName: name,
    log: { level: 'info' },
    listeners: [
      { protocol: 'imap', address: '127.0.0.1', port: ports.imapPp, tls: 'none', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
      { protocol: 'pop3', address: '127.0.0.1', port: ports.pop3Pp, tls: 'none', proxyProtocol: true, proxyTrustedNetworks: ['127.0.0.1/32'] },
      { protocol: 'imap', address: '127.0.0.1', port: ports.imap, tls: 'none' },
      { protocol: 'pop3', address: '127.0.0.1', port: ports.pop3, tls: 'none' },
    ],
    imap: { requireTlsForAuth: false, limits: { authFailureDelayMs: 0 } },
    pop3: { requireTlsForAuth: false, limits: { authFailureDelayMs: 0 } },
    directory: { type: 'static', static: { file: directoryFile } },
    backends: Object.fromEntries(w.members.map((m) => [m.name, { host: '127.0.0.1', imap: { port: m.dovecot.ports.imap }, pop3: { port: m.dovecot.ports.pop3 }, trustsProxy: true }])),
    pools: { store1: { members, ...pool } },
    health: { intervalMs: 300, timeoutMs: 1000, rise: 2, fall: 2, kickWindowMs: 300 },
    admin: { address: '127.0.0.1', port: 0 },
    ...extra,
  };
}

/** Start one proxy per name (fresh ports on EADDRINUSE: ports are allocated, then bound by the child) and HAProxy for IMAP and POP3. */
export async function startPoolNodes(w: PoolWorld, names: readonly string[], config: (name: string, ports: PoolNode['ports']) => RawConfig): Promise<PoolNodes> {
  const nodes = await Promise.all(names.map(async (name): Promise<PoolNode> => {
    for (let attempt = 1; ; attempt++) {
      const [imapPp, pop3Pp, imap, pop3] = (await allocatePorts(4)) as [number, number, number, number];
      const ports = { imapPp, pop3Pp, imap, pop3 };
      try {
        return { name, ports, proxy: await startChildProxy(w, config(name, ports), { name, timeoutMs: 60_000 }) };
      } catch (e) {
        if (attempt >= 3 || !/EADDRINUSE/.test((e as Error).message)) throw e;
      }
    }
  }));
  const [hImap, hPop3] = await Promise.all([
    startHaproxy({ dir: join(w.dir, 'haproxy-imap'), servers: nodes.map((n) => ({ name: n.name, port: n.ports.imapPp })), checkIntervalMs: 500 }),
    startHaproxy({ dir: join(w.dir, 'haproxy-pop3'), servers: nodes.map((n) => ({ name: n.name, port: n.ports.pop3Pp })), checkIntervalMs: 500 }),
  ]);
  for (const h of [hImap, hPop3]) for (const n of nodes) await h.waitServer(n.name, (s) => s.status.startsWith('UP'), 20_000);
  return {
    nodes, hImap, hPop3,
    stop: async () => { await Promise.allSettled([hImap.stop(), hPop3.stop(), ...nodes.map((n) => n.proxy.stop())]); },
  };
}

/** A backend's folded state as one proxy's admin API shows it. */
export async function backendState(n: PoolNode, backend: string): Promise<string> {
  const r = await adminGet(n.proxy.adminPort!, `/backends/${backend}`);
  return (JSON.parse(r.body) as { state: string }).state;
}

export function waitState(nodes: readonly PoolNode[], backend: string, pred: (s: string) => boolean, timeoutMs = 20_000): Promise<void> {
  return pollUntil(async () => (await Promise.all(nodes.map((n) => backendState(n, backend)))).every(pred), timeoutMs, () => `${backend} state on every proxy`);
}

export interface Round { from: number; to: number; temps: number }

/** One IMAP and one POP3 login+logout per user through `via` (HAProxy spreads them over the proxies); temporary refusals retried. */
export async function loginRound(users: readonly TestUser[], via: { imap: number; pop3: number }, concurrency = 12): Promise<Round> {
  const from = Date.now();
  let temps = 0;
  await runAll(users, concurrency, async (u) => {
    temps += await untilOk(() => imapOnce(via.imap, u.uid, u.password));
    temps += await untilOk(() => pop3Once(via.pop3, u.uid, u.password));
  });
  await sleep(300); // Dovecot writes disconnect lines asynchronously
  return { from, to: Date.now(), temps };
}

export function only(set: Set<string> | undefined, user: string): string {
  assert.ok(set, `${user} has no session in this round`);
  assert.equal(set.size, 1, `${user} was served by ${[...set].join(' and ')} in one round`);
  return [...set][0]!;
}

/** Each user's one member in a round (asserting exactly one), from the backends' logs. */
export async function servedIn(w: PoolWorld, r: { from: number; to: number }, users: readonly TestUser[]): Promise<Map<string, string>> {
  const p = membersByUser(await w.sessions(), r.from, r.to);
  return new Map(users.map((u) => [u.uid, only(p.get(u.uid), u.uid)]));
}

export function shares(map: Map<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of map.values()) out[m] = (out[m] ?? 0) + 1;
  return out;
}
