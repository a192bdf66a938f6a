// Owns real redis-server fixtures for tests (Debian package redis-server): standalone (optional ACL users) and a
// Sentinel set (primary, replica, three Sentinels; optionally ACL users everywhere and TLS-only ports), on free
// loopback ports in temp folders; stop, kill, pause, restart. Must not know about mailproxy beyond the ACL it documents.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findProgram } from './binaries.js';
import { allocatePorts, pollUntil, waitListening } from './ports.js';
import { pauseTree, runCommand, signalTree, spawnFixture, stopFixture, type Spawned } from './processes.js';
import { generateCert, type TlsFiles } from './tls-cert.js';

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
  /** redis-cli against this node (as the default user, or cliAuth); output trimmed. */
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
  /** The harness's own redis-cli calls log in as this ACL user (for a node whose default user is off). */
  cliAuth?: Credentials;
  /** TLS only (`port 0`, `port` is the TLS port; replication and Sentinel links over TLS; no client certificates). */
  tls?: TlsFiles;
}

export interface Credentials { user: string; password: string }

/** TLS towards other nodes (replication, Sentinel links), verified with the CA; no client certificates asked. */
function tlsClientLines(t: TlsFiles): string[] {
  return [`tls-cert-file ${t.certPath}`, `tls-key-file ${t.keyPath}`, `tls-ca-cert-file ${t.caPath}`, 'tls-auth-clients no', 'tls-replication yes'];
}

function tlsLines(port: number, t: TlsFiles): string[] {
  return ['port 0', `tls-port ${port}`, ...tlsClientLines(t)];
}

export async function startRedis(o: RedisOptions): Promise<RedisNode> {
  const bin = requireRedis();
  await mkdir(o.dir, { recursive: true });
  const port = o.port ?? (await allocatePorts(1))[0]!;
  const conf = join(o.dir, o.sentinel ? 'sentinel.conf' : 'redis.conf');
  const lines = [
    ...(o.tls ? tlsLines(port, o.tls) : [`port ${port}`]),
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
  const cliArgs = ['-h', '127.0.0.1', '-p', String(port),
    ...(o.cliAuth ? ['--user', o.cliAuth.user, '--pass', o.cliAuth.password, '--no-auth-warning'] : []),
    ...(o.tls ? ['--tls', '--cacert', o.tls.caPath] : [])];
  const cli = (...args: string[]) => runCommand(bin.cli, [...cliArgs, ...args], { timeoutMs: 5000 }).then((s) => s.trim());
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

/** Redis' documented minimum for Sentinel's user on the data nodes (Redis docs, "ACL rules for Sentinel and Replicas"). */
export const SENTINEL_MONITOR_ACL_RULES = 'allchannels +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill';
/** … and for the replication user (`masteruser`) on the primary. */
export const REPLICATION_ACL_RULES = '+psync +replconf +ping';
/** On the Sentinels, what mailproxy (ioredis) asks: the primary's address, the other Sentinels, `+switch-master` events. */
export const SENTINEL_CLIENT_ACL_RULES = 'resetchannels &+switch-master -@all +ping +subscribe +sentinel|get-master-addr-by-name +sentinel|sentinels';
/** On the Sentinels, what one Sentinel asks of another (`sentinel sentinel-user`): pings, hellos, votes. */
export const SENTINEL_PEER_ACL_RULES = 'resetchannels &__sentinel__:hello -@all +ping +publish +client|setname +sentinel|is-master-down-by-addr';

/** The ACL users of a Sentinel set started with `acl: true` (random passwords). */
export interface SentinelSetUsers {
  /** The tier's user on the data nodes (TIER_ACL_RULES). */
  mailproxy: Credentials;
  /** The tier's user on the Sentinels (SENTINEL_CLIENT_ACL_RULES). */
  sentinelClient: Credentials;
  /** Sentinel's user on the data nodes (`sentinel auth-user`), replication (`masteruser`), Sentinel to Sentinel. */
  monitor: Credentials;
  replication: Credentials;
  peer: Credentials;
  /** `+@all` everywhere: the harness's own redis-cli calls. */
  admin: Credentials;
}

export interface SentinelSet {
  masterName: string;
  primary: RedisNode;
  replica: RedisNode;
  sentinels: RedisNode[];
  /** Present with `acl: true`. */
  users?: SentinelSetUsers;
  /** Present with `tls`: the certificate every TLS node serves (also the CA clients trust). */
  tls?: TlsFiles;
  /** The primary's port as the Sentinels report it now. */
  currentPrimaryPort(): Promise<number>;
  stop(): Promise<void>;
}

export interface SentinelSetOptions {
  dir: string;
  /** More config lines for both data nodes. */
  extra?: string[];
  masterName?: string;
  /**
   * Run the set as an operator following Redis' docs would: `user default off` everywhere, the tier's user
   * (TIER_ACL_RULES), a replication user (`masteruser`/`masterauth` on both data nodes, so the old primary can follow
   * the new one), Sentinel's user on the data nodes (`sentinel auth-user/auth-pass`), Sentinels requiring a client
   * user, and `sentinel sentinel-user/sentinel-pass` between Sentinels.
   */
  acl?: boolean;
  /**
   * Data nodes and Sentinels on TLS ports only (a self-signed certificate for localhost / 127.0.0.1); 'data': only the
   * data nodes, the Sentinels serve clients on a plain port (their peers and the data nodes talk TLS).
   */
  tls?: boolean | 'data';
}

const credentials = (user: string): Credentials => ({ user, password: randomBytes(12).toString('hex') });
const userLine = (c: Credentials, rules: string) => `user ${c.user} on >${c.password} ${rules}`;

/** A primary, one replica and three Sentinels (quorum 2, down-after 1 s, failover timeout 3 s), all on loopback. */
export async function startSentinelSet(o: SentinelSetOptions): Promise<SentinelSet> {
  const masterName = o.masterName ?? 'mp';
  let tls: TlsFiles | undefined;
  if (o.tls) {
    const openssl = findProgram('openssl');
    if (!openssl) throw new Error('TLS Sentinel set cannot start; missing: openssl (Debian package openssl)');
    await mkdir(join(o.dir, 'tls'), { recursive: true });
    tls = await generateCert(openssl, join(o.dir, 'tls'));
  }
  const users: SentinelSetUsers | undefined = o.acl ? {
    mailproxy: credentials('mailproxy'), sentinelClient: credentials('mailproxy-sentinel'), monitor: credentials('sentinel'),
    replication: credentials('replication'), peer: credentials('sentinel-peer'), admin: credentials('admin'),
  } : undefined;
  const common = { ...(tls ? { tls } : {}), ...(users ? { cliAuth: users.admin } : {}) };
  const sentinelCommon = { ...(tls && o.tls === true ? { tls } : {}), ...(users ? { cliAuth: users.admin } : {}) };
  const dataExtra = [
    ...(users ? [
      'user default off',
      userLine(users.admin, '~* &* +@all'),
      userLine(users.mailproxy, TIER_ACL_RULES),
      userLine(users.replication, REPLICATION_ACL_RULES),
      userLine(users.monitor, SENTINEL_MONITOR_ACL_RULES),
      `masteruser ${users.replication.user}`,
      `masterauth ${users.replication.password}`,
    ] : []),
    ...(o.extra ?? []),
  ];
  const primary = await startRedis({ dir: join(o.dir, 'primary'), extra: dataExtra, ...common });
  const replica = await startRedis({ dir: join(o.dir, 'replica'), extra: [...dataExtra, `replicaof 127.0.0.1 ${primary.port}`], ...common });
  await pollUntil(async () => /master_link_status:up/.test(await replica.cli('INFO', 'replication')), 10_000, () => 'replica linked to primary');
  const sentinels: RedisNode[] = [];
  for (let i = 0; i < 3; i++) {
    sentinels.push(await startRedis({
      dir: join(o.dir, `sentinel${i}`),
      sentinel: true,
      ...sentinelCommon,
      extra: [
        // Sentinel talks TLS to every node it links to (tls-replication), its peers too: they need a TLS port besides
        // the plain one the clients use (a Sentinel announces its TLS port to its peers then).
        ...(tls && o.tls === 'data' ? [`tls-port ${(await allocatePorts(1))[0]!}`, ...tlsClientLines(tls)] : []),
        `sentinel monitor ${masterName} 127.0.0.1 ${primary.port} 2`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 3000`,
        `sentinel parallel-syncs ${masterName} 1`,
        ...(users ? [
          `sentinel auth-user ${masterName} ${users.monitor.user}`,
          `sentinel auth-pass ${masterName} ${users.monitor.password}`,
          `sentinel sentinel-user ${users.peer.user}`,
          `sentinel sentinel-pass ${users.peer.password}`,
          'user default off',
          userLine(users.admin, '~* &* +@all'),
          userLine(users.sentinelClient, SENTINEL_CLIENT_ACL_RULES),
          userLine(users.peer, SENTINEL_PEER_ACL_RULES),
        ] : []),
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
    ...(users ? { users } : {}),
    ...(tls ? { tls } : {}),
    currentPrimaryPort,
    stop: async () => { await Promise.all([...sentinels, replica, primary].map((n) => n.stop())); },
  };
}
