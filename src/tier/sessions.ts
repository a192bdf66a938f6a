// Owns the tier's session registry (who is logged in where) and the tier-wide session limits counted from it.
// Must not kick or know protocols' dialogues; entries of crashed instances stop counting with their heartbeat.
import { BACKGROUND_TIMEOUT_MS, type TierClient } from './client.js';
import type { TierKeys } from './keys.js';
import { instanceNameOf, type TierPresence } from './presence.js';
import { foldName, namesAccount } from '../directory/names.js';

/** One logged-in session as any instance shows it. */
export interface TierSessionView {
  instance: string;
  id: string;
  protocol: string;
  user: string;
  backend: string;
  client: string;
  since: string;
}

export interface SessionEntry {
  id: string;
  protocol: string;
  /** The login name the directory returned (the account's login): limits count by it, in any case. */
  user: string;
  /** The account's mail address, when the directory gave one: a listing may name the user by it. */
  mail?: string;
  backend: string;
  /** Client address without port (limits count it). */
  address: string;
  /** address:port, for display. */
  client: string;
  startedAt: number;
}

export type AdmitResult = { ok: true; source: 'tier' | 'local' } | { ok: false; limit: 'user' | 'address'; count: number; source: 'tier' | 'local' };

interface Registered { entry: SessionEntry; userKey: string; addrKey: string; userMember: string; addrMember: string; mailKey?: string }

/**
 * Count the live sessions of the same protocol in the user's and the address's sets (removing members of instances
 * that are gone), refuse when a limit is reached, else add the session to both. One round trip, atomic across instances.
 * Once admitted, the login goes into the mail address's set of logins when ARGV[8] is not empty (KEYS[4] is that set).
 * KEYS: instances, user set, address set, [mail's logins,] then keys to delete once admitted (penalty counters).
 * ARGV: now, user member, address member, protocol, max user, max address, key TTL, login for the mail's set or ''.
 */
const ADMIT_SCRIPT = `
local now = tonumber(ARGV[1])
local alive = {}
local function isLive(inst)
  if inst == nil then return false end
  local v = alive[inst]
  if v == nil then
    local s = redis.call('ZSCORE', KEYS[1], inst)
    v = (s ~= false and s ~= nil and tonumber(s) >= now)
    alive[inst] = v
  end
  return v
end
local function parseUser(m)
  local ok, t = pcall(cjson.decode, m)
  if ok and type(t) == 'table' then return t.i, t.p end
  return nil, nil
end
local function parseAddr(m)
  local i, _, p = string.match(m, '^([^|]*)|([^|]*)|([^|]*)$')
  return i, p
end
local function count(key, proto, parse)
  local n = 0
  for _, m in ipairs(redis.call('SMEMBERS', key)) do
    local inst, p = parse(m)
    if not isLive(inst) then redis.call('SREM', key, m)
    elseif p == proto then n = n + 1 end
  end
  return n
end
local maxUser = tonumber(ARGV[5])
local maxAddr = tonumber(ARGV[6])
if maxUser > 0 then
  local n = count(KEYS[2], ARGV[4], parseUser)
  if n >= maxUser then return {1, n} end
end
if maxAddr > 0 then
  local n = count(KEYS[3], ARGV[4], parseAddr)
  if n >= maxAddr then return {2, n} end
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
local first = 4
if ARGV[8] ~= '' then
  redis.call('SADD', KEYS[4], ARGV[8])
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
  first = 5
end
for i = first, #KEYS do redis.call('DEL', KEYS[i]) end
return {0, 0}
`;

const BULK_TIMEOUT_MS = 2000;
const LIST_TIMEOUT_MS = 500;

export class TierSessions {
  private readonly local = new Map<string, Registered>();
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: TierClient,
    private readonly keys: TierKeys,
    private readonly presence: TierPresence,
    private readonly now: () => number = Date.now,
  ) {
    client.onUp(() => void this.resync());
  }

  /** Keep the keys of this process's sessions from expiring while the sessions live. */
  start(): void {
    this.refreshTimer = setInterval(() => void this.refreshKeys(), Math.floor(this.client.config.sessionKeyTtlMs / 4));
    this.refreshTimer.unref();
  }

  stop(): void { clearInterval(this.refreshTimer); }

  /**
   * Register a session at login, unless a tier-wide limit for its protocol is reached. When Redis does not answer
   * within the deadline, the limits are checked against this process's own sessions (and it is pushed later).
   */
  async admit(entry: SessionEntry, deleteOnAdmit: readonly string[] = []): Promise<AdmitResult> {
    const c = this.client.config;
    const proto = entry.protocol as keyof typeof c.limits.maxSessionsPerUser;
    const maxUser = c.limits.maxSessionsPerUser[proto] ?? 0;
    const maxAddr = c.limits.maxSessionsPerAddress[proto] ?? 0;
    const reg = this.registered(entry);
    const reply = await this.client.run('sessions_admit', (r) => this.client.script(r, ADMIT_SCRIPT,
      [this.keys.instances, reg.userKey, reg.addrKey, ...(reg.mailKey !== undefined ? [reg.mailKey] : []), ...deleteOnAdmit],
      [this.now(), reg.userMember, reg.addrMember, entry.protocol, maxUser, maxAddr, c.sessionKeyTtlMs, reg.mailKey !== undefined ? entry.user : '']));
    if (Array.isArray(reply)) {
      const [code, n] = reply.map(Number) as [number, number];
      if (code === 1) return { ok: false, limit: 'user', count: n, source: 'tier' };
      if (code === 2) return { ok: false, limit: 'address', count: n, source: 'tier' };
      this.local.set(entry.id, reg);
      return { ok: true, source: 'tier' };
    }
    const mine = [...this.local.values()].filter((x) => x.entry.protocol === entry.protocol);
    const byUser = mine.filter((x) => foldName(x.entry.user) === foldName(entry.user)).length;
    if (maxUser > 0 && byUser >= maxUser) return { ok: false, limit: 'user', count: byUser, source: 'local' };
    const byAddr = mine.filter((x) => x.entry.address === entry.address).length;
    if (maxAddr > 0 && byAddr >= maxAddr) return { ok: false, limit: 'address', count: byAddr, source: 'local' };
    this.local.set(entry.id, reg);
    return { ok: true, source: 'local' };
  }

  /** The session ended (or its backend login failed). Not awaited by anyone. */
  release(id: string): void {
    const reg = this.local.get(id);
    if (!reg) return;
    this.local.delete(id);
    void this.client.run('sessions_release', (r) => r.pipeline().srem(reg.userKey, reg.userMember).srem(reg.addrKey, reg.addrMember).exec(), { timeoutMs: BACKGROUND_TIMEOUT_MS });
  }

  /**
   * Sessions of `user` (a login or mail address in any case, as a kick names it) on every live instance: the login's
   * set, and the sets of the logins registered under that mail address. This process's own when Redis does not answer.
   * `loginPath`: a login waits for it (pool routing), so the login deadline (`commandTimeoutMs`) applies and a tier marked
   * down is not asked at all; otherwise (operators' listings) Redis gets LIST_TIMEOUT_MS and is tried even while marked down.
   */
  async list(user: string, opts: { loginPath?: boolean } = {}): Promise<{ source: 'tier' | 'local'; sessions: TierSessionView[] }> {
    const run = opts.loginPath ? {} : { timeoutMs: LIST_TIMEOUT_MS, evenIfDown: true };
    const members = await this.client.run('sessions_list', async (r) => {
      const first = (await r.pipeline().smembers(this.keys.userSessions(user)).smembers(this.keys.mailLogins(user)).exec()) ?? [];
      const logins = stringsAt(first, 1).filter((l) => foldName(l) !== foldName(user));
      if (logins.length === 0) return stringsAt(first, 0);
      const p = r.pipeline();
      for (const l of logins) p.smembers(this.keys.userSessions(l));
      const more = (await p.exec()) ?? [];
      return [...stringsAt(first, 0), ...more.flatMap((_, i) => stringsAt(more, i))];
    }, run);
    const live = members ? await this.presence.live(run.timeoutMs, !opts.loginPath) : undefined;
    if (!members || !live) {
      const mine = [...this.local.values()].filter((x) => namesAccount(x.entry.user, x.entry.mail, user));
      return { source: 'local', sessions: mine.map((x) => view(this.presence.instanceId, x.entry)) };
    }
    const out: TierSessionView[] = [];
    for (const m of members) {
      const v = parseMember(m);
      if (v && live.has(v.i) && namesAccount(v.u, v.m, user)) out.push({ instance: instanceNameOf(v.i), id: v.id, protocol: v.p, user: v.u, backend: v.b, client: v.c, since: new Date(v.t).toISOString() });
    }
    out.sort((a, b) => a.since.localeCompare(b.since) || a.instance.localeCompare(b.instance));
    return { source: 'tier', sessions: out };
  }

  /**
   * One bounded step of a walk over every user's session set (SCAN with COUNT `count`, then their members in one
   * pipeline): the sessions of live instances, grouped per user. Cursor '0' starts a walk; the answer's cursor '0' ends
   * it. Undefined when Redis did not answer (the walk resumes from the same cursor later).
   */
  async scanUsers(cursor: string, count: number): Promise<{ cursor: string; users: TierSessionView[][] } | undefined> {
    const res = await this.client.run('sessions_scan', async (r) => {
      const [next, keys] = await r.scan(cursor, 'MATCH', this.keys.userSessionsPattern, 'COUNT', count);
      if (keys.length === 0) return { next, sets: [] as string[][] };
      const p = r.pipeline();
      for (const k of keys) p.smembers(k);
      const out = (await p.exec()) ?? [];
      return { next, sets: out.map((_, i) => stringsAt(out, i)) };
    }, { timeoutMs: BULK_TIMEOUT_MS });
    const live = res ? await this.presence.live(BULK_TIMEOUT_MS) : undefined;
    if (!res || !live) return undefined;
    const users: TierSessionView[][] = [];
    for (const set of res.sets) {
      const list: TierSessionView[] = [];
      for (const m of set) {
        const v = parseMember(m);
        if (v && live.has(v.i)) list.push({ instance: instanceNameOf(v.i), id: v.id, protocol: v.p, user: v.u, backend: v.b, client: v.c, since: new Date(v.t).toISOString() });
      }
      if (list.length) users.push(list);
    }
    return { cursor: res.next, users };
  }

  /**
   * A lease on a tier-wide chore for `ms`: taken with SET NX PX when free, renewed when this instance holds it. True when this
   * instance holds it now, so one instance does the chore while it lives and another takes over `ms` after it stops.
   */
  async lease(key: string, ms: number): Promise<boolean> {
    const id = this.presence.instanceId;
    const r = await this.client.run('lease', async (c) => {
      if ((await c.set(key, id, 'PX', ms, 'NX')) === 'OK') return true;
      if ((await c.get(key)) !== id) return false;
      await c.pexpire(key, ms);
      return true;
    }, { timeoutMs: BACKGROUND_TIMEOUT_MS });
    return r === true;
  }

  /** Sessions this process has registered. */
  get size(): number { return this.local.size; }

  private registered(entry: SessionEntry): Registered {
    const i = this.presence.instanceId;
    const member: Member = { i, id: entry.id, p: entry.protocol, u: entry.user, b: entry.backend, c: entry.client, t: entry.startedAt, ...(entry.mail !== undefined ? { m: entry.mail } : {}) };
    // A mail address that folds to the login itself needs no set of its own: the login's set is found by it.
    const mailKey = entry.mail !== undefined && foldName(entry.mail) !== foldName(entry.user) ? this.keys.mailLogins(entry.mail) : undefined;
    return {
      entry,
      ...(mailKey !== undefined ? { mailKey } : {}),
      userKey: this.keys.userSessions(entry.user),
      addrKey: this.keys.addressSessions(entry.address),
      userMember: JSON.stringify(member),
      addrMember: `${i}|${entry.id.replace(/\|/g, '_')}|${entry.protocol}`,
    };
  }

  /** Redis is back (possibly empty after a restart): put this process's sessions in again. */
  private async resync(): Promise<void> {
    if (this.local.size === 0) return;
    const ttl = this.client.config.sessionKeyTtlMs;
    const all = [...this.local.values()];
    await this.client.run('sessions_resync', async (r) => {
      const p = r.pipeline();
      for (const x of all) {
        p.sadd(x.userKey, x.userMember).pexpire(x.userKey, ttl).sadd(x.addrKey, x.addrMember).pexpire(x.addrKey, ttl);
        if (x.mailKey !== undefined) p.sadd(x.mailKey, x.entry.user).pexpire(x.mailKey, ttl);
      }
      await p.exec();
      return true;
    }, { timeoutMs: BULK_TIMEOUT_MS });
  }

  private async refreshKeys(): Promise<void> {
    if (this.local.size === 0) return;
    const ttl = this.client.config.sessionKeyTtlMs;
    const keys = new Set<string>();
    for (const x of this.local.values()) { keys.add(x.userKey); keys.add(x.addrKey); if (x.mailKey !== undefined) keys.add(x.mailKey); }
    await this.client.run('sessions_refresh', async (r) => {
      const p = r.pipeline();
      for (const k of keys) p.pexpire(k, ttl);
      await p.exec();
      return true;
    }, { timeoutMs: BULK_TIMEOUT_MS });
  }
}

/** A session in a user's set: instance, session id, protocol, login, backend, client, start (ms), mail address. */
interface Member { i: string; id: string; p: string; u: string; b: string; c: string; t: number; m?: string }

/** The members an SMEMBERS at `i` of a pipeline's replies gave (none on an error). */
function stringsAt(res: ReadonlyArray<[Error | null, unknown]>, i: number): string[] {
  const [err, v] = res[i] ?? [null, undefined];
  return err || !Array.isArray(v) ? [] : (v as string[]);
}

function parseMember(text: string): Member | undefined {
  try {
    const m = JSON.parse(text) as Partial<Member>;
    if (typeof m.i !== 'string' || typeof m.id !== 'string' || typeof m.p !== 'string' || typeof m.u !== 'string'
      || typeof m.b !== 'string' || typeof m.c !== 'string' || typeof m.t !== 'number' || (m.m !== undefined && typeof m.m !== 'string')) return undefined;
    return m as Member;
  } catch {
    return undefined;
  }
}

function view(instanceId: string, e: SessionEntry): TierSessionView {
  return { instance: instanceNameOf(instanceId), id: e.id, protocol: e.protocol, user: e.user, backend: e.backend, client: e.client, since: new Date(e.startedAt).toISOString() };
}
