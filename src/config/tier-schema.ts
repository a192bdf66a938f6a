// Owns the `tier:` section of the one configuration schema (Redis shared state); schema.ts embeds it.
// Must not read files or environment nor hold behaviour beyond validation (load.ts resolves *File keys).
import { z } from 'zod';

const port = z.number().int().min(1).max(65535);
const hostPort = z.strictObject({ host: z.string().min(1), port });
/** Per session protocol (IMAP and POP3 sessions; SMTP submission is relayed per transaction); 0 = no limit. */
const perProtocol = z.strictObject({
  imap: z.number().int().min(0).default(0),
  pop3: z.number().int().min(0).default(0),
  submission: z.number().int().min(0).default(0),
}).prefault({});

const tlsSchema = z.strictObject({
  /** CA bundle (PEM file) that signs the Redis (and Sentinel) certificates; system CAs when unset. */
  caFile: z.string().optional(),
  /** The same as PEM text (filled from caFile by the loader). */
  ca: z.string().optional(),
  /** Name to verify in the certificate; defaults to the host connected to. */
  serverName: z.string().optional(),
});

const redisSchema = z.strictObject({
  /** Standalone Redis / Valkey. */
  host: z.string().min(1).optional(),
  port: port.default(6379),
  /** Sentinel-managed primary (the HA setup): the master group name and some Sentinels. */
  sentinel: z.strictObject({
    name: z.string().min(1),
    sentinels: z.array(hostPort).min(1),
    /** ACL user/password of the Sentinels themselves (when they require auth). */
    username: z.string().optional(),
    password: z.string().optional(),
    passwordFile: z.string().optional(),
    /** Talk TLS to the Sentinels too (CA of redis.tls; system CAs without it). */
    tls: z.boolean().default(false),
  }).optional(),
  /** TLS towards Redis (with sentinel: the data nodes it names); absent = plain TCP. */
  tls: tlsSchema.optional(),
  /** Redis 6 ACL user; absent = the default user. */
  username: z.string().optional(),
  password: z.string().optional(),
  passwordFile: z.string().optional(),
  db: z.number().int().min(0).default(0),
  connectTimeoutMs: z.number().int().min(1).default(1000),
}).refine((r) => !!r.host !== !!r.sentinel, { message: 'tier.redis needs exactly one of host (standalone) or sentinel' });

export const tierSchema = z.strictObject({
  /** Stable, unique name of this instance in the tier; defaults to the host name. Letters, digits, . _ - */
  instanceName: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, . _ - (at most 64)').optional(),
  redis: redisSchema,
  /** Prepended to every key and channel, so several tiers can share one Redis. */
  keyPrefix: z.string().regex(/^[A-Za-z0-9:._-]{0,32}$/, 'letters, digits, : . _ - (at most 32)').default('mailproxy:'),
  /** Deadline of every Redis call; past it the instance uses its local state (never delays a login longer). */
  commandTimeoutMs: z.number().int().min(1).max(5000).default(50),
  /** While Redis is unreachable, try it again this often. */
  retryIntervalMs: z.number().int().min(50).default(500),
  /** This instance tells the tier it is alive this often … */
  heartbeatMs: z.number().int().min(100).default(1000),
  /** … and counts as gone (its sessions and evidence ignored) this long after its last heartbeat. */
  instanceTtlMs: z.number().int().min(500).default(5000),
  /** TTL of session-registry keys (refreshed while sessions live); bounds what a vanished Redis client leaves. */
  sessionKeyTtlMs: z.number().int().min(60_000).default(24 * 3_600_000),
  /** Concurrent logged-in sessions across the tier, per user and per client address, by protocol (0 = no limit). */
  limits: z.strictObject({
    maxSessionsPerUser: perProtocol,
    maxSessionsPerAddress: perProtocol,
  }).prefault({}),
  backendView: z.strictObject({
    /**
     * Down votes needed before the tier calls a backend endpoint down: 'majority' (of the live instances that have
     * fresh probe evidence about it) or a fixed number.
     */
    downQuorum: z.union([z.literal('majority'), z.number().int().min(1)], { error: 'must be "majority" or a whole number of votes, 1 or more' }).default('majority'),
    /** A probe result older than this is no evidence (an instance with a long probe interval abstains). */
    evidenceMaxAgeMs: z.number().int().min(100).default(15_000),
    /** Re-read the shared view this often (changes are also pushed at once). */
    refreshMs: z.number().int().min(100).default(1000),
  }).prefault({}),
  /**
   * Pools: one instance at a time (a lease in Redis) walks the session registry for users with live sessions on two
   * members of one pool and closes those on the member the choice does not keep.
   */
  poolSweep: z.strictObject({
    /** One round this often (0 = no sweep). */
    intervalMs: z.number().int().min(0).default(5000),
    /** SCAN COUNT per round: about this many users' session sets are read per round (a full walk takes users / this rounds). */
    keysPerRound: z.number().int().min(10).max(100_000).default(1000),
  }).prefault({}),
  /**
   * Kicks that must reach every instance although Redis, or one instance's link to it, was away when they were issued:
   * kept here until Redis answers, and in a bounded recent-kicks stream in Redis that instances read after a reconnect.
   */
  kicks: z.strictObject({
    /** Kicks issued while Redis is unreachable are kept (this many at most; the oldest are dropped) and sent when it answers. */
    maxPending: z.number().int().min(1).max(100_000).default(1000),
    /** A kick older than this is neither sent late nor applied from the stream (also the stream's TTL). */
    maxAgeMs: z.number().int().min(1000).max(86_400_000).default(600_000),
    /** Entries kept in the recent-kicks stream (XADD MAXLEN): an instance cut off for more kicks than this misses the oldest. */
    streamLength: z.number().int().min(10).max(100_000).default(1000),
    /** Read the stream this often besides every reconnect (catches a broadcast lost for any other reason). */
    checkIntervalMs: z.number().int().min(100).default(5000),
  }).prefault({}),
}).refine((t) => t.instanceTtlMs >= 2 * t.heartbeatMs, {
  // Shorter, and a live instance counts as gone between its heartbeats: its sessions stop counting toward the limits and
  // listings, its probe evidence stops voting.
  message: 'must be at least twice tier.heartbeatMs (an instance counts as gone this long after its last heartbeat)',
  path: ['instanceTtlMs'],
}).refine((t) => t.poolSweep.intervalMs === 0 || t.poolSweep.intervalMs >= 100, {
  message: '0 (no sweep) or at least 100 ms (each round takes a lease and SCANs Redis)',
  path: ['poolSweep', 'intervalMs'],
});

export type TierConfig = z.output<typeof tierSchema>;
export type TierRedisConfig = TierConfig['redis'];
