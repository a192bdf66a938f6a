// Owns the up/down view of the configured LDAP servers and the order requests try them in (pure: callers pass `now`).
// Must not do I/O, read clocks or keep connections; ldap.ts marks servers from request and probe outcomes.

export interface LdapServer {
  readonly url: string;
  /** Position in directory.ldap.urls: the preferred order. */
  readonly index: number;
  up: boolean;
  /** When `up` last changed (or tracking started). */
  since: number;
  /** Why it is down (sanitised), for logs and diagnostics. */
  reason?: string;
  /** It went down at least once: a later recovery is a failback (held back for failbackAfterMs). */
  wasDown: boolean;
}

export class LdapServerSet {
  readonly all: readonly LdapServer[];

  constructor(urls: readonly string[], private readonly failbackAfterMs: number, now: number) {
    // Unknown servers are taken as up, so the first requests after start do not wait for the first probe.
    this.all = urls.map((url, index) => ({ url, index, up: true, since: now, wasDown: false }));
  }

  /**
   * Servers a request may use, best first: up servers in configured order, except that one which came back less than
   * failbackAfterMs ago goes after the others (no flapping between a recovering primary and a steady secondary).
   * Down servers are left out: everyone skips them at once until a probe brings them back.
   */
  usable(now: number): LdapServer[] {
    const up = this.all.filter((s) => s.up);
    const settled = up.filter((s) => !s.wasDown || now - s.since >= this.failbackAfterMs);
    const recovering = up.filter((s) => !settled.includes(s)).sort((a, b) => a.since - b.since);
    return [...settled, ...recovering];
  }

  /** Returns true when this changed the server's state. */
  markDown(server: LdapServer, reason: string, now: number): boolean {
    server.reason = reason;
    if (!server.up) return false;
    server.up = false;
    server.wasDown = true;
    server.since = now;
    return true;
  }

  markUp(server: LdapServer, now: number): boolean {
    if (server.up) return false;
    server.up = true;
    server.since = now;
    delete server.reason;
    return true;
  }
}
