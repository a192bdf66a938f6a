// Owns reading Dovecot's own logs into per-user session intervals and computing cross-member overlaps from their timestamps.
// Must not talk to Dovecot or the proxy; it parses log text (log_timestamp with microseconds, see pool-world.ts).
export interface BackendSession {
  member: string;
  user: string;
  protocol: string;
  session: string;
  /** ms since the epoch (Dovecot's local time stamp, microsecond precision). */
  start: number;
  /** Disconnect time; the member's stop time when it was killed first; undefined while open. */
  end?: number;
}

/** `log_timestamp` the pool world's Dovecots use, so intervals can be compared at microsecond precision. */
export const PRECISE_LOG_TIMESTAMP = 'log_timestamp = "%Y-%m-%d %H:%M:%S.%{usecs} "';

const STAMP = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) /;
// imap-login: Info: Login: user=<u>, method=PLAIN, rip=…, session=<id>
const LOGIN = /(imap|pop3|submission)-login: Info: Login: user=<([^>]*)>.*session=<([^>]+)>/;
// imap(u)<pid><id>: Info: Disconnected: … | Logged out … (POP3/IMAP end of session lines)
const END = /(imap|pop3|submission)\(([^)]*)\)<\d+><([^>]+)>: Info: (?:Disconnected|Logged out|Connection closed)/;

function stampOf(line: string): number | undefined {
  const m = STAMP.exec(line);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, us] = m.map(Number) as [number, number, number, number, number, number, number, number];
  return new Date(y, mo - 1, d, h, mi, s).getTime() + us / 1000;
}

/**
 * Sessions of one member from its log text. `stops` are the times (ms) the member was killed: a session still open
 * then ended with it (a SIGKILLed Dovecot writes no disconnect lines).
 */
export function parseSessions(member: string, log: string, stops: readonly number[] = []): BackendSession[] {
  // Login lines come from the *-login process and end lines from the mail process; Dovecot's log process writes (and
  // stamps) them as it reads each pipe, so under load an end line can precede its login line in the file. Pair by session id.
  const ends = new Map<string, number>();
  const out: BackendSession[] = [];
  for (const line of log.split('\n')) {
    const t = stampOf(line);
    if (t === undefined) continue;
    const login = LOGIN.exec(line);
    if (login) {
      out.push({ member, protocol: login[1]!, user: login[2]!, session: login[3]!, start: t });
      continue;
    }
    const end = END.exec(line);
    if (end && !ends.has(end[3]!)) ends.set(end[3]!, t);
  }
  for (const s of out) {
    const end = ends.get(s.session);
    if (end !== undefined) s.end = Math.max(end, s.start);
    else {
      const stop = stops.find((x) => x >= s.start);
      if (stop !== undefined) s.end = stop;
    }
  }
  return out;
}

export interface Overlap {
  user: string;
  a: BackendSession;
  b: BackendSession;
  /** Length of the time both sessions were open, ms. */
  ms: number;
}

/** Every pair of one user's sessions on two different members whose open intervals intersect (open sessions run to `now`). */
export function findOverlaps(sessions: readonly BackendSession[], now: number): Overlap[] {
  const byUser = new Map<string, BackendSession[]>();
  for (const s of sessions) {
    const list = byUser.get(s.user) ?? [];
    list.push(s);
    byUser.set(s.user, list);
  }
  const out: Overlap[] = [];
  for (const [user, list] of byUser) {
    list.sort((x, y) => x.start - y.start);
    for (let i = 0; i < list.length; i++) {
      const a = list[i]!;
      const aEnd = a.end ?? now;
      for (let j = i + 1; j < list.length && list[j]!.start < aEnd; j++) {
        const b = list[j]!;
        if (b.member === a.member) continue;
        const ms = Math.min(aEnd, b.end ?? now) - b.start;
        if (ms >= 0) out.push({ user, a, b, ms });
      }
    }
  }
  return out;
}

/** Per user, the set of members that served them in [from, to). */
export function membersByUser(sessions: readonly BackendSession[], from = -Infinity, to = Infinity): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  for (const s of sessions) {
    if (s.start < from || s.start >= to) continue;
    const set = m.get(s.user) ?? new Set<string>();
    set.add(s.member);
    m.set(s.user, set);
  }
  return m;
}
