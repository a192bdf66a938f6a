// Owns the in-process registry of live client sessions (for /sessions, kicks, drain and backend-down goodbyes).
// Must not know protocols or sockets; each entry brings its own kick function.
import type { ProxyError } from '../errors.js';
import { namesAccount } from '../directory/names.js';

export interface SessionInfo {
  id: string;
  protocol: string;
  client: string;
  user?: string;
  /** The account's mail address (a kick or route invalidation may name the user by it). */
  mail?: string;
  backend?: string;
  /** Set when the session went to a standby because this (primary) backend was down. */
  routedFor?: string;
  /** Set when the backend was chosen as a member of this pool (pool affinity moves and counts these). */
  pool?: string;
  phase: 'prelogin' | 'login' | 'relay';
  /** The backend greeting's identity this session logged in with (the node behind the backend's address). */
  backendIdentity?: string;
  startedAt: number;
}

/** `user`: the account's login name or mail address, in any case (as LDAP matches them, and the tier's registry keys). */
export interface SessionMatch { user?: string; backend?: string; startedBefore?: number }

export interface LiveSession {
  info: SessionInfo;
  /** Close with the protocol's goodbye for this error. */
  kick(error: ProxyError): void;
}

export class SessionRegistry {
  private readonly live = new Map<string, LiveSession>();
  private readonly removeListeners: Array<(info: SessionInfo) => void> = [];
  add(s: LiveSession): void { this.live.set(s.info.id, s); }
  remove(id: string): void {
    const s = this.live.get(id);
    this.live.delete(id);
    if (!s) return;
    for (const fn of this.removeListeners) {
      try { fn(s.info); } catch { /* a listener's failure must not keep a session registered */ }
    }
  }
  /** Called with each session's info when it leaves the registry (pool affinity notes where a user was last served). */
  onRemove(fn: (info: SessionInfo) => void): void { this.removeListeners.push(fn); }
  get size(): number { return this.live.size; }
  /** `startedBefore`: only sessions that started at or before that time (ms), e.g. a kick replayed late. */
  list(filter: SessionMatch = {}): LiveSession[] {
    const user = filter.user;
    return [...this.live.values()].filter((s) => (!user || namesAccount(s.info.user, s.info.mail, user)) && (!filter.backend || s.info.backend === filter.backend)
      && (filter.startedBefore === undefined || s.info.startedAt <= filter.startedBefore));
  }
  /** Kick matching sessions; returns how many. */
  kick(filter: SessionMatch, error: ProxyError): number {
    const hits = this.list(filter);
    for (const s of hits) s.kick(error);
    return hits.length;
  }
}
