// Owns this instance's liveness in the tier (a heartbeat ZSET) and the set of live instances others' data is filtered by.
// Must not hold session or backend data; a crashed instance simply stops counting when its heartbeat expires.
import { randomBytes } from 'node:crypto';
import { BACKGROUND_TIMEOUT_MS, type TierClient } from './client.js';
import type { TierKeys } from './keys.js';

/** Heartbeat entries this far past expiry are removed from the ZSET. */
const PRUNE_AFTER_MS = 60_000;
const LIVE_CACHE_MS = 200;

/** `name#epoch`: a restarted instance is a new member, so sessions of its previous life never look alive. */
export function makeInstanceId(name: string): string {
  return `${name}#${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** The instance name part of an instance id. */
export function instanceNameOf(id: string): string {
  const i = id.lastIndexOf('#');
  return i < 0 ? id : id.slice(0, i);
}

export class TierPresence {
  private timer: NodeJS.Timeout | undefined;
  private cache: { at: number; live: Set<string> } | undefined;

  constructor(private readonly client: TierClient, private readonly keys: TierKeys, readonly instanceId: string, private readonly now: () => number = Date.now) {}

  /** Heartbeat now and every heartbeatMs (only the process that speaks for the instance runs this). */
  start(): void {
    this.client.onUp(() => void this.heartbeat());
    void this.heartbeat();
    this.timer = setInterval(() => void this.heartbeat(), this.client.config.heartbeatMs);
    this.timer.unref();
  }

  async heartbeat(): Promise<boolean> {
    const c = this.client.config;
    const now = this.now();
    const ok = await this.client.run('heartbeat', (r) => r.pipeline()
      .zadd(this.keys.instances, now + c.instanceTtlMs, this.instanceId)
      .zremrangebyscore(this.keys.instances, '-inf', now - PRUNE_AFTER_MS)
      .pexpire(this.keys.instances, c.sessionKeyTtlMs)
      .exec(), { timeoutMs: BACKGROUND_TIMEOUT_MS });
    return ok !== undefined;
  }

  /** Instance ids with a heartbeat that has not expired; undefined when Redis does not answer (or, `evenIfDown` false, the tier is down). */
  async live(timeoutMs?: number, evenIfDown = true): Promise<Set<string> | undefined> {
    const now = this.now();
    if (this.cache && now - this.cache.at < LIVE_CACHE_MS) return this.cache.live;
    const ids = await this.client.run('presence', (r) => r.zrangebyscore(this.keys.instances, now, '+inf'), { timeoutMs: timeoutMs ?? BACKGROUND_TIMEOUT_MS, evenIfDown });
    if (!ids) return undefined;
    this.cache = { at: now, live: new Set(ids) };
    return this.cache.live;
  }

  /** Leaving on purpose: drop the heartbeat so this instance's sessions stop counting at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.client.run('heartbeat', (r) => r.zrem(this.keys.instances, this.instanceId), { timeoutMs: BACKGROUND_TIMEOUT_MS });
  }
}
