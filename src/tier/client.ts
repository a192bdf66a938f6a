// Owns the Redis connections of the tier (ioredis, the only importer): a deadline on every call, up/down state, the
// tier metrics, reconnection, pub/sub. Must not know what the keys mean (the typed operations do) nor ever throw to callers.
import { createHash } from 'node:crypto';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import type { TierConfig } from '../config/tier-schema.js';
import type { Logger } from '../log.js';
import { tierCommandSeconds, tierFallbacksTotal, tierStateChangesTotal, tierUp } from '../metrics.js';

/** The subset of the ioredis client the operations use (so they depend on a shape, not on ioredis). */
export type RedisLike = Redis;

const TIMED_OUT = Symbol('timed out');
/** Redis error codes (a reply's first word) that mean the credentials or the ACL refused the tier. */
const REFUSED = /\b(WRONGPASS|NOAUTH|NOPERM)\b/;

export interface RunOptions {
  /** Deadline of this call; the login path uses the configured commandTimeoutMs (the default). */
  timeoutMs?: number;
  /** Admin and background work: try Redis even while the tier is marked down (if connected), to avoid losing an action to a flap. */
  evenIfDown?: boolean;
}

/** Deadline for work off the login path (heartbeats, the backend view, resync, admin calls). */
export const BACKGROUND_TIMEOUT_MS = 1000;

export interface TierClientOptions {
  config: TierConfig;
  logger: Logger;
  /** Shown by CLIENT LIST (connection name). */
  name: string;
}

/** Connection options for ioredis from the tier config (standalone or Sentinel, TLS, ACL user). */
export function redisOptions(c: TierConfig, name: string): RedisOptions {
  const r = c.redis;
  const tls = r.tls ? { ...(r.tls.ca ? { ca: r.tls.ca } : {}), ...(r.tls.serverName ? { servername: r.tls.serverName } : {}) } : undefined;
  const common: RedisOptions = {
    connectionName: name,
    ...(r.username ? { username: r.username } : {}),
    ...(r.password ? { password: r.password } : {}),
    db: r.db,
    connectTimeout: r.connectTimeoutMs,
    // Our own deadline (run) answers the caller; this one only bounds what a hung server leaves queued in the client.
    commandTimeout: Math.max(2000, c.commandTimeoutMs * 10),
    // A command while disconnected fails at once (we fall back) instead of waiting in a queue.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    // Reconnect quickly at first, then every retryIntervalMs.
    retryStrategy: (times: number) => Math.min(25 * 2 ** Math.min(times, 10), c.retryIntervalMs),
    // After a Sentinel failover the old primary answers writes with READONLY: reconnect (Sentinel finds the new one).
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
  };
  if (r.sentinel) {
    const s = r.sentinel;
    return {
      ...common,
      sentinels: s.sentinels.map((x) => ({ host: x.host, port: x.port })),
      name: s.name,
      role: 'master',
      ...(s.username ? { sentinelUsername: s.username } : {}),
      ...(s.password ? { sentinelPassword: s.password } : {}),
      // ioredis ignores `tls` for the primary it resolves unless enableTLSForSentinelMode is set (it would talk plain
      // TCP to a TLS Redis): redis.tls decides the data connections, sentinel.tls the Sentinel ones (system CAs
      // when redis.tls does not name one).
      ...(tls ? { tls, enableTLSForSentinelMode: true } : {}),
      ...(s.tls ? { sentinelTLS: tls ?? {} } : {}),
      sentinelCommandTimeout: r.connectTimeoutMs,
      sentinelRetryStrategy: () => c.retryIntervalMs,
      // Subscribe to +switch-master so a failover is followed at once, not at the next error.
      failoverDetector: true,
    };
  }
  return { ...common, host: r.host!, port: r.port, ...(tls ? { tls } : {}) };
}

export class TierClient {
  readonly redis: Redis;
  private sub: Redis | undefined;
  private up = false;
  private logged: 'up' | 'down' | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private checking = false;
  private readonly upListeners: Array<() => void> = [];
  private readonly subscribedListeners: Array<() => void> = [];
  private readonly scripts = new Map<string, string>();

  constructor(private readonly opts: TierClientOptions) {
    tierUp.set(0);
    // ioredis's option types predate exactOptionalPropertyTypes (replyMapping?: T without | undefined).
    this.redis = new Redis(redisOptions(opts.config, opts.name) as RedisOptions & { replyMapping?: never });
    this.redis.on('error', (e: Error) => this.markDown(this.errorReason(e)));
    this.redis.on('close', () => this.markDown('connection closed'));
    this.redis.on('ready', () => void this.check());
  }

  get isUp(): boolean { return this.up; }
  get config(): TierConfig { return this.opts.config; }

  /** Connect (returns at once; the tier is down until Redis answers). */
  start(): void {
    this.redis.connect().catch(() => undefined);
    this.scheduleRetry();
  }

  /** Called every time the tier comes (back) up: the operations resynchronise their local state. */
  onUp(fn: () => void): void { this.upListeners.push(fn); }

  /**
   * Run one Redis operation under the deadline. Resolves undefined (and counts a fallback) when the tier is down,
   * the call fails or the deadline passes; never rejects. `fn` must resolve a value other than undefined.
   * Background work (resync, listing) may pass a longer deadline; the login path uses the configured one.
   */
  async run<T>(op: string, fn: (r: Redis) => Promise<T>, opts: RunOptions = {}): Promise<T | undefined> {
    const timeoutMs = opts.timeoutMs ?? this.opts.config.commandTimeoutMs;
    if (this.closed || (!this.up && !(opts.evenIfDown && this.redis.status === 'ready'))) { tierFallbacksTotal.inc({ operation: op }); return undefined; }
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    // When the timer fires, let one round of I/O callbacks run first: a reply that arrived while this process was busy
    // (event-loop lag under CPU load) wins, so only a slow Redis counts as a timeout, not a slow us.
    const deadline = new Promise<typeof TIMED_OUT>((resolve) => { timer = setTimeout(() => setImmediate(() => resolve(TIMED_OUT)), timeoutMs); });
    try {
      const v = await Promise.race([fn(this.redis), deadline]);
      if (v === TIMED_OUT) { this.fail(op, `${op}: no answer within ${timeoutMs} ms`); return undefined; }
      tierCommandSeconds.observe({ operation: op }, (performance.now() - t0) / 1000);
      if (!this.up) void this.check();
      return v;
    } catch (e) {
      this.fail(op, `${op}: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** EVALSHA with a one-time EVAL when the script is not cached (a Redis restart empties the cache). */
  async script(r: Redis, source: string, keys: string[], args: Array<string | number>): Promise<unknown> {
    let sha = this.scripts.get(source);
    if (!sha) { sha = createHash('sha1').update(source).digest('hex'); this.scripts.set(source, sha); }
    try {
      return await r.evalsha(sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return r.eval(source, keys.length, ...keys, ...args);
    }
  }

  /** Called every time the subscription connection is (re)established: messages sent while it was down were lost. */
  onSubscribed(fn: () => void): void { this.subscribedListeners.push(fn); }

  /** Subscribe to a channel on a dedicated connection (re-subscribed after every reconnect). */
  subscribe(channel: string, onMessage: (text: string) => void): void {
    if (!this.sub) {
      this.sub = this.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, connectionName: `${this.opts.name}-sub`, lazyConnect: true } as RedisOptions & { replyMapping?: never });
      this.sub.on('error', () => undefined);
      this.sub.on('ready', () => { for (const fn of this.subscribedListeners) fn(); });
      this.sub.on('message', (ch: string, text: string) => {
        if (ch !== channel) return;
        try { onMessage(text); } catch (e) { this.opts.logger.error({ event: 'tier_message_error', err: e instanceof Error ? e.message : String(e) }, 'tier message handler threw'); }
      });
      this.sub.connect().catch(() => undefined);
    }
    this.sub.subscribe(channel).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
    this.redis.disconnect();
    this.sub?.disconnect();
    this.up = false;
    tierUp.set(0);
  }

  /** Why the connection failed; when Redis or the Sentinels refused the tier's user, which settings to check (never the password). */
  private errorReason(e: Error): string {
    const msg = e.message.slice(0, 200);
    const code = REFUSED.exec(e.message)?.[1];
    if (!code) return `redis error: ${msg}`;
    const r = this.opts.config.redis;
    // A refusal by the primary arrives as its ReplyError; ioredis reports the Sentinels' as a plain Error once all were tried.
    if (e instanceof ReplyError || !r.sentinel) return `Redis refused the tier's user ${r.username ?? 'default'} (${code}; check tier.redis.username, password and the Redis ACL): ${msg}`;
    return `the Sentinels refused the tier's user ${r.sentinel.username ?? 'default'} (${code}; check tier.redis.sentinel.username, password and the Sentinels' ACL): ${msg}`;
  }

  private fail(op: string, reason: string): void {
    tierFallbacksTotal.inc({ operation: op });
    this.markDown(reason);
  }

  private markDown(reason: string): void {
    if (this.closed) return;
    if (this.up) tierStateChangesTotal.inc({ to: 'down' });
    this.up = false;
    tierUp.set(0);
    if (this.logged !== 'down') {
      this.logged = 'down';
      this.opts.logger.warn({ event: 'tier_state', to: 'down', reason }, 'tier down: using local state');
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setInterval(() => { if (!this.up) void this.check(); }, this.opts.config.retryIntervalMs);
    this.retryTimer.unref();
  }

  /** Down → up only after a PING answered within the deadline (a SIGSTOPped Redis keeps its socket open). */
  private async check(): Promise<void> {
    if (this.up || this.closed || this.checking || this.redis.status !== 'ready') return;
    this.checking = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const deadline = new Promise<typeof TIMED_OUT>((resolve) => { timer = setTimeout(() => resolve(TIMED_OUT), this.opts.config.commandTimeoutMs * 4); });
      const pong = await Promise.race([this.redis.ping(), deadline]).catch(() => TIMED_OUT);
      if (pong === TIMED_OUT || this.closed || this.redis.status !== 'ready') return;
    } finally {
      clearTimeout(timer);
      this.checking = false;
    }
    this.up = true;
    tierUp.set(1);
    tierStateChangesTotal.inc({ to: 'up' });
    if (this.logged !== 'up') {
      this.logged = 'up';
      this.opts.logger.info({ event: 'tier_state', to: 'up' }, 'tier up: sharing state through Redis');
    }
    for (const fn of this.upListeners) {
      try { fn(); } catch (e) { this.opts.logger.error({ event: 'tier_resync_error', err: e instanceof Error ? e.message : String(e) }, 'tier resync threw'); }
    }
  }
}
