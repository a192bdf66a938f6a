// Owns the pure rules of kicks that must reach every instance late: the record kept in the recent-kicks stream, the
// bounded queue of kicks issued while Redis was away, the bounded set of kick ids applied, and what a read kick means here.
// Must not talk to Redis or touch sessions (kicks.ts and the composition do).
import { z } from 'zod';

/** Whom a kick closes: a user's sessions, a backend's, or a user's on one backend. */
export interface KickTarget { user?: string; backend?: string }

/** `k`'s user and backend as a target of their own (absent or empty ones left out). */
export function kickTarget(k: { user?: string | undefined; backend?: string | undefined }): KickTarget {
  return { ...(k.user ? { user: k.user } : {}), ...(k.backend ? { backend: k.backend } : {}) };
}

/** One kick as it travels: a unique id (applied once per instance), who issued it and when (sessions started later are spared). */
export interface KickRecord {
  id: string;
  from: string;
  /** Issue time (ms, the issuing instance's clock). */
  at: number;
  user?: string;
  backend?: string;
}

const name = z.string().min(1).max(512);
export const kickRecordSchema = z.strictObject({
  id: z.string().min(1).max(64),
  from: z.string().min(1).max(200),
  at: z.number().int().nonnegative(),
  user: name.optional(),
  backend: name.optional(),
}).refine((k) => k.user !== undefined || k.backend !== undefined, { message: 'a kick names a user or a backend' });

/** Field of a stream entry holding the record (JSON). */
export const KICK_FIELD = 'k';

/** A stream entry's fields ([name, value, …]) as a record; undefined when it is not a valid one (never trusted). */
export function parseKickEntry(fields: readonly string[]): KickRecord | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== KICK_FIELD) continue;
    let v: unknown;
    try { v = JSON.parse(fields[i + 1]!); } catch { return undefined; }
    const r = kickRecordSchema.safeParse(v);
    return r.success ? stripUndefined(r.data) : undefined;
  }
  return undefined;
}

function stripUndefined(k: z.output<typeof kickRecordSchema>): KickRecord {
  return { id: k.id, from: k.from, at: k.at, ...kickTarget(k) };
}

/** The smallest stream id after `id` ("ms-seq"), so XRANGE can start past the last one read (Redis 6.0 has no exclusive range). */
export function nextStreamId(id: string): string {
  const m = /^(\d+)-(\d+)$/.exec(id);
  if (!m) return '0-1';
  return `${m[1]}-${(BigInt(m[2]!) + 1n).toString()}`;
}

export interface PendingKick { record: KickRecord; failed: boolean }

/**
 * Kicks this instance issued that Redis has not taken yet, oldest first: at most `maxCount` (a new one pushes the oldest
 * out) and none older than `maxAgeMs` (a kick that late would surprise an administrator more than help).
 */
export class PendingKicks {
  private readonly list: PendingKick[] = [];
  constructor(private readonly maxCount: number, private readonly maxAgeMs: number) {}
  get size(): number { return this.list.length; }
  has(id: string): boolean { return this.list.some((p) => p.record.id === id); }
  /** Queue a kick; returns the ones pushed out by the count bound. */
  add(record: KickRecord): KickRecord[] {
    this.list.push({ record, failed: false });
    return this.list.splice(0, Math.max(0, this.list.length - this.maxCount)).map((p) => p.record);
  }
  /** Drop and return the ones past the age bound. */
  expire(now: number): KickRecord[] {
    const out: KickRecord[] = [];
    for (let i = this.list.length - 1; i >= 0; i--) {
      if (now - this.list[i]!.record.at > this.maxAgeMs) out.unshift(...this.list.splice(i, 1).map((p) => p.record));
    }
    return out;
  }
  /** The oldest, still queued. */
  first(): PendingKick | undefined { return this.list[0]; }
  /** The oldest was published: remove it. */
  shift(): PendingKick | undefined { return this.list.shift(); }
  /** Publishing failed: every queued kick counts as late when it goes out. */
  markFailed(): void { for (const p of this.list) p.failed = true; }
}

/** Kick ids applied (or issued) here, the newest `max` of them. */
export class SeenKicks {
  private readonly ids = new Set<string>();
  constructor(private readonly max: number) {}
  has(id: string): boolean { return this.ids.has(id); }
  /** Remember `id`; false when it was already there. */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value!);
    return true;
  }
}

/** What a kick read from the stream (or heard live) means for this instance. */
export type KickVerdict = 'apply' | 'seen' | 'own' | 'expired' | 'before-start';

/**
 * `apply` unless this instance issued it (`own`, applied at issue), already applied it (`seen`), it is older than
 * `maxAgeMs` (`expired`), or it was issued before this instance started (`before-start`: none of its sessions is older).
 */
export function kickVerdict(k: KickRecord, o: { self: string; startedAt: number; now: number; maxAgeMs: number; seen: Pick<SeenKicks, 'has'> }): KickVerdict {
  if (k.from === o.self) return 'own';
  if (o.seen.has(k.id)) return 'seen';
  if (k.at < o.startedAt) return 'before-start';
  if (o.now - k.at > o.maxAgeMs) return 'expired';
  return 'apply';
}

/** The session filter a kick applies here: its user/backend, and only sessions that started at or before the kick. */
export function kickFilter(k: KickRecord): KickTarget & { startedBefore: number } {
  return { ...kickTarget(k), startedBefore: k.at };
}
