// Owns real redis-server fixtures for tests (Debian package redis-server): standalone (optional ACL users) and a
// Sentinel set (primary, replica, three Sentinels), on free loopback ports in temp folders; stop, kill, pause, restart.
// Must not know about mailproxy beyond the ACL lines it is given.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findProgram } from './binaries.js';
import { allocatePorts, pollUntil, waitListening } from './ports.js';
import { pauseTree, runCommand, signalTree, spawnFixture, stopFixture, type Spawned } from './processes.js';

/** The ACL the README documents for the proxies (keys and channels under the prefix, only the commands used). */
export const TIER_ACL_RULES = 'resetkeys ~mailproxy:* resetchannels &mailproxy:* -@all +ping +info +role +select +client|setname +hello +incr +incrby +pexpire +del +mget +sadd +srem +smembers +zadd +zrem +zscore +zrangebyscore +zremrangebyscore +hset +hdel +hgetall +scan +set +get +publish +subscribe +unsubscribe +evalsha +eval +xadd +xrange';

/** redis-server's path; throws naming the Debian package when missing (never a silent skip). */
export function requireRedis(): { server: string; cli: string } {
  const server = findProgram('redis-server');
  const cli = findProgram('redis-cli');
  if (!server || !cli) {
    throw new Error('Redis tests cannot start; missing: redis-server/redis-cli (Debian packages redis-server, redis-tools). Install with: apt-get install -y redis-server (or run scripts/ensure-packages.sh as root)');
  }
  return { server, cli };
}

export interface RedisNode {
  port: number;
  dir: string;
  pid(): number | undefined;
  /** redis-cli against this node as the default user; output trimmed. */
  cli(...args: string[]): Promise<string>;
  /** SIGSTOP (every thread stopped when it returns) / SIGCONT. */
  pause(): void;
  resume(): void;
  /** SIGKILL: a crash (SIGCONT first when paused). */
  kill(): Promise<void>;
  /** Start again on the same port and config (empty: no persistence). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

export interface RedisOptions {
  dir: string;
  /** Extra config lines (e.g. ACL `user …` lines, `replicaof …`). */
  extra?: string[];
  port?: number;
  /** Run as a Sentinel (config is rewritten by Sentinel, so it lives in dir). */
  sentinel?: boolean;
}

export async function startRedis(o: RedisOptions): Promise<RedisNode> {
  const bin = requireRedis();
  await mkdir(o.dir, { recursive: true });
  const port = o.port ?? (await allocatePorts(1))[0]!;
  const conf = join(o.dir, o.sentinel ? 'sentinel.conf' : 'redis.conf');
  const lines = [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${o.dir}`,
    `pidfile ${join(o.dir, 'redis.pid')}`,
    'daemonize no',
    ...(o.sentinel ? [] : ['save ""', 'appendonly no']),
    ...(o.extra ?? []),
  ];
  await writeFile(conf, lines.join('\n') + '\n');
  let proc: Spawned | undefined;
  const launch = async () => {
    proc = spawnFixture(bin.server, o.sentinel ? [conf, '--sentinel'] : [conf], o.dir, join(o.dir, 'redis.out'));
    const p = proc;
    let exited = false;
    void p.exited.then(() => (exited = true));
    await waitListening([port], 5000, o.sentinel ? 'redis sentinel' : 'redis-server', () => (exited ? `(exited: ${p.output()})` : ''));
    await pollUntil(async () => (await cli('PING').catch(() => '')) === 'PONG', 5000, () => `redis on ${port} answers PING`);
  };
  const cli = (...args: string[]) => runCommand(bin.cli, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 5000 }).then((s) => s.trim());
  await launch();
  return {
    port,
    dir: o.dir,
    pid: () => proc?.child.pid,
    cli,
    pause: () => { const p = proc?.child.pid; if (p !== undefined) pauseTree(p); },
    resume: () => { const p = proc?.child.pid; if (p !== undefined) signalTree(p, 'SIGCONT'); },
    // A plain SIGKILL (redis-server forks nothing here): stopFixture's synchronous pause would block this event loop,
    // which in-process tier tests are measuring.
    kill: async () => {
      const p = proc;
      if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill('SIGKILL');
      p.child.kill('SIGCONT');
      await p.exited;
    },
    restart: async () => { if (proc) await stopFixture(proc); await launch(); },
    stop: async () => { if (proc) await stopFixture(proc, { graceful: true, graceMs: 2000 }); },
    output: () => proc?.output() ?? '',
  };
}

export interface SentinelSet {
  masterName: string;
  primary: RedisNode;
  replica: RedisNode;
  sentinels: RedisNode[];
  /** The primary's port as the Sentinels report it now. */
  currentPrimaryPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A primary, one replica and three Sentinels (quorum 2, down-after 1 s, failover timeout 3 s), all on loopback.
 * `extra` lines (ACL users) go to both data nodes.
 */
export async function startSentinelSet(o: { dir: string; extra?: string[]; masterName?: string }): Promise<SentinelSet> {
  const masterName = o.masterName ?? 'mp';
  const primary = await startRedis({ dir: join(o.dir, 'primary'), ...(o.extra ? { extra: o.extra } : {}) });
  const replica = await startRedis({ dir: join(o.dir, 'replica'), extra: [...(o.extra ?? []), `replicaof 127.0.0.1 ${primary.port}`] });
  await pollUntil(async () => /master_link_status:up/.test(await replica.cli('INFO', 'replication')), 10_000, () => 'replica linked to primary');
  const sentinels: RedisNode[] = [];
  for (let i = 0; i < 3; i++) {
    sentinels.push(await startRedis({
      dir: join(o.dir, `sentinel${i}`),
      sentinel: true,
      extra: [
        `sentinel monitor ${masterName} 127.0.0.1 ${primary.port} 2`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 3000`,
        `sentinel parallel-syncs ${masterName} 1`,
      ],
    }));
  }
  const currentPrimaryPort = async () => {
    const out = await sentinels[0]!.cli('SENTINEL', 'get-master-addr-by-name', masterName);
    return Number(out.split('\n')[1]);
  };
  // Sentinels discover each other and the replica through the primary's hello channel.
  await pollUntil(async () => /num-other-sentinels\n2/.test(await sentinels[0]!.cli('SENTINEL', 'master', masterName)), 15_000, () => 'sentinels see each other');
  return {
    masterName,
    primary,
    replica,
    sentinels,
    currentPrimaryPort,
    stop: async () => { await Promise.all([...sentinels, replica, primary].map((n) => n.stop())); },
  };
}
