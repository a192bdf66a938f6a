// Owns the shared backend view: this instance's probe evidence published to Redis, the tier verdict per endpoint read
// back (quorum, tierVerdict), and the tier-wide maintenance flags. Must not probe or decide local health (health/ does).
import type { Logger } from '../log.js';
import { tierBackendDown } from '../metrics.js';
import type { TierBroadcast } from './broadcast.js';
import { BACKGROUND_TIMEOUT_MS, type TierClient } from './client.js';
import type { TierKeys } from './keys.js';
import type { TierPresence } from './presence.js';
import { tierVerdict, type Evidence } from './verdict.js';
import { flaggedBackends, recordedSwitches, switchesToPush, type MaintenanceSwitch } from './maintenance.js';

/** What this instance knows about one endpoint (from its HealthMonitor). */
export interface LocalEvidence {
  backend: string;
  protocol: string;
  health: Evidence['health'];
  /** Last probe (ms since epoch); endpoints never probed are not published. */
  at: number | undefined;
}

export interface BackendViewSource {
  /** Every endpoint's local health and last probe time. */
  evidence(): LocalEvidence[];
  /** Backends in maintenance on this instance (pushed back after Redis lost them). */
  maintenance(): string[];
}

export interface BackendViewEvents {
  /** The tier verdict on an endpoint changed (down: the tier holds it down; false: back to local health only). */
  verdict(backend: string, protocol: string, down: boolean): void;
  /** A maintenance flag seen in the shared view (after a missed broadcast or at start). */
  maintenance(backend: string, enabled: boolean): void;
  /** The view after a refresh, when it differs from the last one (pool members take their conditions from it). */
  changed?(view: TierViewSnapshot): void;
}

/** The shared view as a whole: whether Redis answered the last refresh, endpoints held down, backends in maintenance. */
export interface TierViewSnapshot {
  available: boolean;
  /** `backend\tprotocol` */
  down: string[];
  maintenance: string[];
}

const BULK_TIMEOUT_MS = BACKGROUND_TIMEOUT_MS;
const VIEW_TTL_MS = 3_600_000;
const MAINTENANCE_TTL_MS = 30 * 86_400_000;

/** Where a maintenance switch made through this instance stands in the tier: in Redis (and broadcast), or pending until Redis answers. */
export type SwitchDelivery = 'sent' | 'pending';

/**
 * A switch pushed back after an outage, written only when Redis holds no switch for the backend as new as it (both
 * hashes read in the same atomic step: instances pushing at once after a restart cannot put an older one over a newer).
 * KEYS: the switch's hash, the other state's hash. ARGV: backend, at (ms), TTL (ms). Returns 1 written, 0 not newer.
 */
const PUSH_SWITCH_SCRIPT = `
local function recorded(key)
  local h = redis.call('HGETALL', key)
  for i = 1, #h, 2 do if h[i] == ARGV[1] then return tonumber(h[i + 1]) or 0 end end
  return nil
end
local at = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local t = recorded(key)
  if t ~= nil and t >= at then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** The HGETALL reply at `i` of a pipeline's results (an empty hash when absent). */
function hashAt(res: ReadonlyArray<[Error | null, unknown]>, i: number): Record<string, string> {
  return (res[i]?.[1] ?? {}) as Record<string, string>;
}

export class TierBackendView {
  private readonly down = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private lastPublished = '';
  private refreshing = false;
  private again = false;
  private seenMaintenance = new Set<string>();
  /** The latest maintenance switch this instance knows per backend (made here, heard or read), for the push after an outage. */
  private readonly switches = new Map<string, MaintenanceSwitch>();
  /** Switches made here while Redis did not answer, until the resync wrote them or found them outvoted (both logged). */
  private readonly pending = new Map<string, MaintenanceSwitch>();
  /** Whether the last refresh read the view from Redis. */
  private available = false;
  private lastSnapshot = '';

  constructor(
    private readonly client: TierClient,
    private readonly keys: TierKeys,
    private readonly presence: TierPresence,
    private readonly broadcast: TierBroadcast,
    private readonly source: BackendViewSource,
    private readonly events: BackendViewEvents,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    client.onUp(() => void this.resync());
    broadcast.onAction((a, _from, at) => {
      if (a.type === 'view') void this.refresh();
      if (a.type === 'maintenance') this.noteSwitch(a.backend, { enabled: a.enabled, at });
    });
  }

  start(): void {
    this.timer = setInterval(() => { void this.publish().then(() => this.refresh()); }, this.client.config.backendView.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.available = false;
    for (const key of [...this.down]) this.setVerdict(key, false);
    this.emitSnapshot();
  }

  /** The whole view now (what pools decide member conditions from; a cluster primary sends it to its workers). */
  snapshot(): TierViewSnapshot {
    return { available: this.available, down: [...this.down].sort(), maintenance: [...this.seenMaintenance].sort() };
  }

  /** Endpoints the tier holds down, as `backend\tprotocol` (what a cluster primary sends its workers). */
  downKeys(): string[] { return [...this.down]; }

  /** Whether the tier holds this endpoint down (synchronous: the login path asks it). */
  isDown(backend: string, protocol: string): boolean { return this.down.has(`${backend}\t${protocol}`); }

  /**
   * Publish this instance's evidence; `urgent` (a local state change to or from down) also tells the other instances to
   * re-read the view now rather than at their next refresh.
   */
  async publish(urgent = false): Promise<void> {
    const mine = this.source.evidence().filter((e) => e.at !== undefined);
    const fields: Record<string, string> = {};
    for (const e of mine) fields[`${e.backend}\t${e.protocol}\t${this.presence.instanceId}`] = JSON.stringify({ h: e.health, at: e.at });
    const text = JSON.stringify(fields);
    if (!urgent && text === this.lastPublished) return;
    if (mine.length === 0) return;
    const ok = await this.client.run('backend_view', (r) => r.pipeline().hset(this.keys.backendView, fields).pexpire(this.keys.backendView, VIEW_TTL_MS).exec(), { timeoutMs: BACKGROUND_TIMEOUT_MS });
    if (ok === undefined) { this.lastPublished = ''; return; }
    this.lastPublished = text;
    if (urgent) await this.broadcast.send({ type: 'view' });
  }

  /** Re-read everyone's evidence and compute the verdicts; without Redis, drop them (local health alone decides). */
  async refresh(): Promise<void> {
    if (this.refreshing) { this.again = true; return; }
    this.refreshing = true;
    try {
      do {
        this.again = false;
        await this.refreshOnce();
        this.emitSnapshot();
      } while (this.again);
    } finally {
      this.refreshing = false;
    }
  }

  /**
   * Maintenance on/off for the whole tier (kept in Redis so instances that missed the broadcast or start later follow).
   * 'pending' when Redis did not take it: applied here only, written when Redis answers unless a newer switch is there.
   */
  async setMaintenance(backend: string, enabled: boolean): Promise<SwitchDelivery> {
    const s = { enabled, at: this.now() };
    this.switches.set(backend, s);
    if (await this.writeSwitch(backend, s, BACKGROUND_TIMEOUT_MS) === undefined) {
      this.pending.set(backend, s);
      this.logger.warn({ event: 'tier_maintenance_pending', backend, enabled }, `maintenance ${enabled ? 'on' : 'off'} for ${backend} set here; Redis is unreachable, so the tier gets it when Redis answers`);
      return 'pending';
    }
    this.pending.delete(backend);
    if (enabled) this.seenMaintenance.add(backend); else this.seenMaintenance.delete(backend);
    // In Redis now: an instance that misses the broadcast reads it at its next refresh.
    await this.broadcast.send({ type: 'maintenance', backend, enabled });
    return 'sent';
  }

  /**
   * One switch into Redis: its record in one hash, the other's removed (an "off" is kept so a stale "on" cannot come
   * back). `pushBack` (after an outage): only when Redis holds no switch as new ('older' otherwise). Undefined: no answer.
   */
  private async writeSwitch(backend: string, s: MaintenanceSwitch, timeoutMs: number, pushBack = false): Promise<'written' | 'older' | undefined> {
    const [set, clear] = s.enabled ? [this.keys.maintenance, this.keys.maintenanceOff] : [this.keys.maintenanceOff, this.keys.maintenance];
    const ok = await this.client.run('maintenance', (r) => (pushBack
      ? this.client.script(r, PUSH_SWITCH_SCRIPT, [set, clear], [backend, s.at, MAINTENANCE_TTL_MS])
      : r.pipeline().hset(set, backend, String(s.at)).hdel(clear, backend).pexpire(set, MAINTENANCE_TTL_MS).exec()), { timeoutMs, evenIfDown: true });
    if (ok === undefined) return undefined;
    return pushBack && Number(ok) !== 1 ? 'older' : 'written';
  }

  /** After a resync: log what became of each switch made here while Redis was away, and forget those settled. */
  private settlePending(recorded: ReadonlyMap<string, MaintenanceSwitch>, pushed: ReadonlyMap<string, 'written' | 'older' | undefined>): void {
    for (const [backend, s] of [...this.pending]) {
      const result = pushed.get(backend);
      if (pushed.has(backend) && result === undefined) continue; // Redis went away again: the next resync tries again
      this.pending.delete(backend);
      const state = s.enabled ? 'on' : 'off';
      const r = recorded.get(backend);
      const latest = this.switches.get(backend);
      const superseded = latest !== undefined && (latest.at !== s.at || latest.enabled !== s.enabled);
      if (!superseded && (result === 'written' || (result === undefined && r?.enabled === s.enabled))) {
        this.logger.info({ event: 'tier_maintenance_written', backend, enabled: s.enabled, at: new Date(s.at).toISOString() }, `maintenance ${state} for ${backend}, set here while Redis was unreachable, is in Redis now: the whole tier has it`);
      } else {
        const newer = superseded ? latest : r;
        this.logger.warn({ event: 'tier_maintenance_outvoted', backend, enabled: s.enabled, at: new Date(s.at).toISOString(), ...(newer ? { newerEnabled: newer.enabled, newerAt: new Date(newer.at).toISOString() } : {}) },
          `maintenance ${state} for ${backend}, set here while Redis was unreachable, was not written: a newer switch was made meanwhile`);
      }
    }
  }

  private noteSwitch(backend: string, s: MaintenanceSwitch): void {
    const known = this.switches.get(backend);
    if (!known || s.at >= known.at) this.switches.set(backend, s);
  }

  private async refreshOnce(): Promise<void> {
    const c = this.client.config.backendView;
    const res = await this.client.run('backend_view', (r) => r.pipeline().hgetall(this.keys.backendView).hgetall(this.keys.maintenance).hgetall(this.keys.maintenanceOff).exec(), { timeoutMs: BULK_TIMEOUT_MS });
    const live = res ? await this.presence.live(BULK_TIMEOUT_MS) : undefined;
    if (!res || !live) {
      this.available = false;
      for (const key of [...this.down]) this.setVerdict(key, false);
      return;
    }
    this.available = true;
    const view = hashAt(res, 0);
    const recorded = recordedSwitches({ on: hashAt(res, 1), off: hashAt(res, 2) });
    const byEndpoint = new Map<string, Evidence[]>();
    const stale: string[] = [];
    for (const [field, value] of Object.entries(view)) {
      const [backend, protocol, instance] = field.split('\t');
      if (!backend || !protocol || !instance) { stale.push(field); continue; }
      if (!live.has(instance)) { stale.push(field); continue; }
      const ev = parseEvidence(instance, value);
      if (!ev) continue;
      const key = `${backend}\t${protocol}`;
      const list = byEndpoint.get(key) ?? [];
      list.push(ev);
      byEndpoint.set(key, list);
    }
    const now = this.now();
    for (const [key, evidence] of byEndpoint) this.setVerdict(key, tierVerdict(evidence, live, c.downQuorum, c.evidenceMaxAgeMs, now).down);
    for (const key of [...this.down]) if (!byEndpoint.has(key)) this.setVerdict(key, false);
    // On from the shared flags; off for a flag this instance saw and that is gone (a broadcast it missed), or for a local
    // flag outvoted by a later "off" in Redis. A restarted Redis has lost the flags, but every instance pushes its own
    // back (resync) before it reads them.
    const flagged = flaggedBackends(recorded);
    for (const backend of flagged) if (!this.seenMaintenance.has(backend)) this.events.maintenance(backend, true);
    for (const backend of new Set([...this.seenMaintenance, ...this.source.maintenance()])) {
      if (flagged.has(backend)) continue;
      const r = recorded.get(backend);
      if (this.seenMaintenance.has(backend) || (r && !r.enabled && r.at > (this.switches.get(backend)?.at ?? 0))) this.events.maintenance(backend, false);
    }
    for (const [backend, s] of recorded) this.noteSwitch(backend, s);
    this.seenMaintenance = flagged;
    if (stale.length) void this.client.run('backend_view', (r) => r.hdel(this.keys.backendView, ...stale), { timeoutMs: BACKGROUND_TIMEOUT_MS });
  }

  private emitSnapshot(): void {
    const snap = this.snapshot();
    const text = JSON.stringify(snap);
    if (text === this.lastSnapshot) return;
    this.lastSnapshot = text;
    try { this.events.changed?.(snap); } catch (e) {
      this.logger.error({ event: 'tier_view_handler_error', err: e instanceof Error ? e.message : String(e) }, 'tier view handler threw');
    }
  }

  private setVerdict(key: string, down: boolean): void {
    if (this.down.has(key) === down) return;
    if (down) this.down.add(key); else this.down.delete(key);
    const [backend, protocol] = key.split('\t') as [string, string];
    tierBackendDown.set({ backend, protocol }, down ? 1 : 0);
    this.logger[down ? 'warn' : 'info']({ event: 'tier_backend_verdict', backend, protocol, down }, `tier verdict: ${backend} ${protocol} ${down ? 'down' : 'not down'}`);
    try { this.events.verdict(backend, protocol, down); } catch (e) {
      this.logger.error({ event: 'tier_verdict_handler_error', err: e instanceof Error ? e.message : String(e) }, 'tier verdict handler threw');
    }
  }

  /**
   * Redis is back: push the maintenance switches Redis lacks (a restarted Redis lost the flags; a switch made here while
   * it did not answer) but none older than what it holds, then our evidence, then read the view.
   */
  private async resync(): Promise<void> {
    const mine = new Map(this.switches);
    for (const b of this.source.maintenance()) if (!mine.has(b)) mine.set(b, { enabled: true, at: 0 });
    if (mine.size) {
      const res = await this.client.run('maintenance', (r) => r.pipeline().hgetall(this.keys.maintenance).hgetall(this.keys.maintenanceOff).exec(), { timeoutMs: BULK_TIMEOUT_MS });
      if (res) {
        const recorded = recordedSwitches({ on: hashAt(res, 0), off: hashAt(res, 1) });
        const pushed = new Map<string, 'written' | 'older' | undefined>();
        for (const [backend, s] of switchesToPush(mine, recorded)) pushed.set(backend, await this.writeSwitch(backend, s, BULK_TIMEOUT_MS, true));
        // The others re-read the view (a broadcast 'maintenance' would carry the send time, not the switch's).
        if ([...pushed.values()].includes('written')) await this.broadcast.send({ type: 'view' });
        this.settlePending(recorded, pushed);
      }
    }
    this.lastPublished = '';
    await this.publish();
    await this.refresh();
  }
}

function parseEvidence(instance: string, text: string): Evidence | undefined {
  try {
    const v = JSON.parse(text) as { h?: unknown; at?: unknown };
    if ((v.h === 'unknown' || v.h === 'up' || v.h === 'suspect' || v.h === 'down') && typeof v.at === 'number') return { instance, health: v.h, at: v.at };
  } catch { /* ignore */ }
  return undefined;
}
