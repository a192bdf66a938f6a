// Owns kicks reaching every instance of the tier: issue (broadcast plus the bounded recent-kicks stream, or kept here while
// Redis is away), catch-up from the stream after a reconnect, each kick applied once. Must not touch sessions (onKick does).
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import { tierBroadcastsTotal, tierKicksTotal } from '../metrics.js';
import type { TierAction, TierBroadcast } from './broadcast.js';
import { BACKGROUND_TIMEOUT_MS, type TierClient } from './client.js';
import { KICK_FIELD, kickTarget, kickVerdict, nextStreamId, parseKickEntry, PendingKicks, SeenKicks, type KickRecord, type KickTarget } from './kick-replay.js';
import type { TierKeys } from './keys.js';

/** Carries a kick out here (only sessions started at or before k.at); resolves how many sessions it closed. */
export type KickSink = (k: KickRecord) => Promise<number>;

/** Entries read per XRANGE call, and calls per catch-up at most (the stream is bounded anyway). */
const PAGE = 100;
const MAX_PAGES = 1000;

type KickAction = Extract<TierAction, { type: 'kick' }>;

function describe(k: KickRecord): Record<string, unknown> {
  return { id: k.id, from: k.from, at: new Date(k.at).toISOString(), ...kickTarget(k) };
}

export class TierKicks {
  private readonly pending: PendingKicks;
  private readonly seen: SeenKicks;
  private readonly startedAt: number;
  /** Last stream id read; every id after it is still to read. */
  private cursor = '0-0';
  private sink: KickSink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private syncQueued = false;

  constructor(private readonly client: TierClient, private readonly keys: TierKeys, private readonly broadcast: TierBroadcast, private readonly instanceId: string, private readonly logger: Logger, private readonly now: () => number = Date.now) {
    const c = client.config.kicks;
    this.pending = new PendingKicks(c.maxPending, c.maxAgeMs);
    this.seen = new SeenKicks(c.streamLength * 2 + c.maxPending);
    this.startedAt = now();
  }

  /** How kicks from other instances are carried out here. */
  onKick(fn: KickSink): void { this.sink = fn; }

  /** Catch up (and send what is pending) on every reconnect of either connection, and every checkIntervalMs. */
  start(): void {
    this.client.onUp(() => this.sync());
    this.client.onSubscribed(() => this.sync());
    this.timer = setInterval(() => this.sync(), this.client.config.kicks.checkIntervalMs);
    this.timer.unref();
  }

  stop(): void { clearInterval(this.timer); this.timer = undefined; }

  /**
   * A kick already applied here, for the other instances: 'sent' when Redis took it, 'pending' when it is kept here and
   * goes out once Redis answers (within kicks.maxAgeMs; the others apply it only to sessions started before now).
   */
  async issue(filter: KickTarget): Promise<'sent' | 'pending'> {
    const record: KickRecord = { id: randomUUID(), from: this.instanceId, at: this.now(), ...filter };
    this.seen.add(record.id);
    for (const d of this.pending.add(record)) this.dropped(d, 'maxPending');
    await this.serial(() => this.flush());
    if (!this.pending.has(record.id)) return 'sent';
    tierKicksTotal.inc({ outcome: 'pending' });
    this.logger.warn({ event: 'tier_kick_pending', ...describe(record), pending: this.pending.size }, 'Redis unreachable: kick applied here, kept for the other instances until Redis answers');
    return 'pending';
  }

  /** A kick broadcast by another instance (pub/sub). One without id/at (an older version) is applied as it is. */
  async receive(a: KickAction, from: string): Promise<void> {
    const filter = kickTarget(a);
    if (a.id === undefined || a.at === undefined) {
      await this.sink?.({ id: '', from, at: this.now(), ...filter });
      return;
    }
    await this.consider({ id: a.id, from, at: a.at, ...filter }, 'live');
  }

  /** Send what is pending, then read the stream past the cursor (one at a time; a request while one runs is merged). */
  sync(): void {
    if (this.syncQueued) return;
    this.syncQueued = true;
    void this.serial(async () => {
      this.syncQueued = false;
      await this.flush();
      await this.catchUp();
    });
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const p = this.chain.then(fn);
    this.chain = p.catch((e: unknown) => this.logger.error({ event: 'tier_kick_error', err: e instanceof Error ? e.message : String(e) }, 'tier kick sync threw'));
    return this.chain;
  }

  private dropped(k: KickRecord, bound: 'maxPending' | 'maxAgeMs'): void {
    tierKicksTotal.inc({ outcome: 'dropped' });
    this.logger.error({ event: 'tier_kick_dropped', ...describe(k), bound }, `a kick never reached the other instances (tier.kicks.${bound})`);
  }

  private async flush(): Promise<void> {
    for (;;) {
      for (const e of this.pending.expire(this.now())) this.dropped(e, 'maxAgeMs');
      const p = this.pending.first();
      if (!p) return;
      if (!(await this.publish(p.record))) { this.pending.markFailed(); return; }
      this.pending.shift();
      if (p.failed) {
        tierKicksTotal.inc({ outcome: 'sent_late' });
        this.logger.info({ event: 'tier_kick_sent_late', ...describe(p.record), lateMs: this.now() - p.record.at }, 'kick issued while Redis was away sent to the tier');
      }
    }
  }

  /** XADD to the stream (bounded, TTL) and PUBLISH, in one round trip. */
  private async publish(k: KickRecord): Promise<boolean> {
    const c = this.client.config.kicks;
    const action: TierAction = { type: 'kick', id: k.id, at: k.at, ...kickTarget(k) };
    const ok = await this.client.run('kick_send', async (r) => {
      const res = await r.pipeline()
        .xadd(this.keys.kicks, 'MAXLEN', String(c.streamLength), '*', KICK_FIELD, JSON.stringify(k))
        .pexpire(this.keys.kicks, c.maxAgeMs)
        .publish(this.keys.channel, this.broadcast.encode(action))
        .exec();
      const err = (res ?? []).find(([e]) => e)?.[0];
      if (err) throw err;
      return true;
    }, { timeoutMs: BACKGROUND_TIMEOUT_MS, evenIfDown: true });
    if (ok) tierBroadcastsTotal.inc({ type: 'kick', direction: 'sent' });
    return ok === true;
  }

  private async catchUp(): Promise<void> {
    for (let page = 0; page < MAX_PAGES; page++) {
      const entries = await this.client.run('kick_read', (r) => r.xrange(this.keys.kicks, nextStreamId(this.cursor), '+', 'COUNT', PAGE), { timeoutMs: BACKGROUND_TIMEOUT_MS });
      if (!entries) return;
      for (const [sid, fields] of entries) {
        this.cursor = sid;
        const k = parseKickEntry(fields);
        if (!k) { this.logger.warn({ event: 'tier_message_invalid', stream: 'kicks', entry: sid }, 'ignoring an invalid recent-kicks entry'); continue; }
        await this.consider(k, 'replay');
      }
      if (entries.length < PAGE) return;
    }
  }

  private async consider(k: KickRecord, how: 'live' | 'replay'): Promise<void> {
    const verdict = kickVerdict(k, { self: this.instanceId, startedAt: this.startedAt, now: this.now(), maxAgeMs: this.client.config.kicks.maxAgeMs, seen: this.seen });
    if (verdict === 'own' || verdict === 'seen') return;
    this.seen.add(k.id);
    if (verdict === 'before-start') return;
    if (verdict === 'expired') {
      tierKicksTotal.inc({ outcome: 'expired' });
      this.logger.warn({ event: 'tier_kick_expired', ...describe(k), how }, 'kick reached this instance past tier.kicks.maxAgeMs: not applied');
      return;
    }
    const kicked = (await this.sink?.(k)) ?? 0;
    if (how === 'replay') {
      tierKicksTotal.inc({ outcome: 'replayed' });
      this.logger.warn({ event: 'tier_kick_replayed', ...describe(k), lateMs: this.now() - k.at, kicked }, `kick missed while cut off from the tier applied late (${kicked} sessions closed)`);
    } else {
      this.logger.info({ event: 'tier_kick_applied', ...describe(k), kicked }, `kick from another instance applied (${kicked} sessions closed)`);
    }
  }
}
