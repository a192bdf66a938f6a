// Owns the pooled connections to one LDAP server: one shared service-account connection (searches, multiplexed) and up
// to `size` exclusive connections for user binds, kept open and reused. Must not judge server health or time requests.
import type { CancelSignal } from '../core/cancel.js';
import type { Client } from 'ldapts';

/** The parts of an ldapts Client the directory uses (tests substitute a fake). */
export type LdapClient = Pick<Client, 'bind' | 'search' | 'unbind' | 'startTLS' | 'isConnected'>;

export type PoolKind = 'service' | 'bind';

/** A connection being opened: `ready` resolves once it is secured (StartTLS) and, for the service kind, bound. */
export interface Opened { client: LdapClient; ready: Promise<LdapClient> }

export interface Lease {
  ready: Promise<LdapClient>;
  /** Opened for this lease (a failure on it is the server's, not a stale kept connection's). */
  fresh: boolean;
  /** Give the connection back: reusable = it answered; otherwise it is closed. Idempotent. */
  release(reusable: boolean): void;
}

export interface LdapPoolOptions {
  /** Exclusive user-bind connections at most (RFC 4511 §4.2.1: no other operation on a connection while a bind runs). */
  size: number;
  /** Idle bind connections are closed after this (sweep()). */
  idleTimeoutMs: number;
  open(kind: PoolKind): Opened;
  now(): number;
}

/** A lease request given up by its caller (the directory request finished or ran out of time). */
export class LeaseAborted extends Error {}

interface Waiter { grant(lease: Lease): void; abort(): void }

export class LdapPool {
  private service: (Opened & { used: boolean; dropped: boolean }) | null = null;
  private idle: Array<{ conn: Opened; since: number }> = [];
  private readonly lent = new Set<Opened>();
  private waiters: Waiter[] = [];
  private generation = 0;

  constructor(private readonly opts: LdapPoolOptions) {}

  acquire(kind: PoolKind, signal?: CancelSignal, forceFresh = false): Promise<Lease> {
    return kind === 'service' ? Promise.resolve(this.serviceLease(forceFresh)) : this.bindLease(signal, forceFresh);
  }

  /** Close every connection (a failing server: the others are likely stuck the same way); waiters get fresh ones. */
  closeAll(): void {
    this.generation++;
    if (this.service) this.dropService(this.service);
    for (const { conn } of this.idle) void closeQuietly(conn.client);
    this.idle = [];
    for (const conn of this.lent) void closeQuietly(conn.client);
    this.lent.clear();
    this.serveWaiters();
  }

  /** Close bind connections idle for longer than idleTimeoutMs. */
  sweep(now = this.opts.now()): void {
    const keep = this.idle.filter((e) => now - e.since < this.opts.idleTimeoutMs);
    for (const e of this.idle) if (!keep.includes(e)) void closeQuietly(e.conn.client);
    this.idle = keep;
  }

  /** Close everything and refuse waiters (directory closed). */
  destroy(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.abort();
    this.closeAll();
  }

  stats(): { service: number; idle: number; lent: number; waiting: number } {
    return { service: this.service ? 1 : 0, idle: this.idle.length, lent: this.lent.size, waiting: this.waiters.length };
  }

  private serviceLease(forceFresh: boolean): Lease {
    let s = this.service;
    let fresh = false;
    // A kept connection the server closed is replaced, never silently reopened (that would skip StartTLS and the bind).
    if (!s || forceFresh || (s.used && !s.client.isConnected)) {
      if (s) this.dropService(s);
      const opened = this.opts.open('service');
      const created = { ...opened, used: false, dropped: false };
      created.ready.catch(() => this.dropService(created));
      this.service = s = created;
      fresh = true;
    }
    const conn = s;
    return lease(conn, fresh, (reusable) => {
      if (reusable) conn.used = true;
      else this.dropService(conn);
    });
  }

  private dropService(conn: Opened & { dropped: boolean }): void {
    if (this.service === conn) this.service = null;
    if (conn.dropped) return;
    conn.dropped = true;
    void closeQuietly(conn.client);
  }

  private bindLease(signal: CancelSignal | undefined, forceFresh: boolean): Promise<Lease> {
    if (signal?.aborted) return Promise.reject(new LeaseAborted());
    if (!forceFresh) {
      while (this.idle.length) {
        const { conn } = this.idle.pop()!;
        if (conn.client.isConnected) return Promise.resolve(this.lend(conn, false));
        void closeQuietly(conn.client);
      }
    }
    if (this.lent.size < this.opts.size) return Promise.resolve(this.lend(this.opts.open('bind'), true));
    return new Promise<Lease>((resolve, reject) => {
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new LeaseAborted());
      };
      const waiter: Waiter = {
        grant: (lease) => { signal?.removeEventListener('abort', onAbort); resolve(lease); },
        abort: onAbort,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private lend(conn: Opened, fresh: boolean): Lease {
    this.lent.add(conn);
    const generation = this.generation;
    return lease(conn, fresh, (reusable) => {
      this.lent.delete(conn);
      if (reusable && generation === this.generation && conn.client.isConnected) {
        const waiter = this.waiters.shift();
        if (waiter) waiter.grant(this.lend(conn, false));
        else this.idle.push({ conn, since: this.opts.now() });
        return;
      }
      void closeQuietly(conn.client);
      this.serveWaiters();
    });
  }

  /** Room freed without a connection to hand over: open fresh ones for waiters. */
  private serveWaiters(): void {
    while (this.waiters.length && this.lent.size < this.opts.size) this.waiters.shift()!.grant(this.lend(this.opts.open('bind'), true));
  }
}

export async function closeQuietly(client: LdapClient): Promise<void> {
  try { await client.unbind(); } catch { /* already gone */ }
}

/** A lease of `conn` whose `release` runs `onRelease` once, however often it is called. */
function lease(conn: Opened, fresh: boolean, onRelease: (reusable: boolean) => void): Lease {
  let released = false;
  return {
    ready: conn.ready,
    fresh,
    release: (reusable) => {
      if (released) return;
      released = true;
      onRelease(reusable);
    },
  };
}
