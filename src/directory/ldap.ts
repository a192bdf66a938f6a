// Owns the LDAP directory: service-account searches and user binds on pooled connections, hedged across servers, probes
// that mark servers up/down (never for this host's own EMFILE & co.). Must not cache, retry on the same server, or let an ldapts error escape (ProxyError or { ok: false }).
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { Client, InvalidCredentialsError, ResultCodeError, type ClientOptions, type Entry } from 'ldapts';
import type { LdapConfig } from '../config/schema.js';
import { isLocalResourceError, ProxyError, sanitize } from '../errors.js';
import type { Logger } from '../log.js';
import { directoryRequestSeconds, ldapServiceBindOk, ldapUp } from '../metrics.js';
import { isTokenCredentials, type Credentials } from '../core/types.js';
import { backendTlsOptions } from '../core/tls.js';
import type { Account, AuthResult, Directory } from './directory.js';
import { buildFilter, parseFilter } from './ldap-filter.js';
import { closeQuietly, LdapPool, LeaseAborted, type LdapClient, type PoolKind } from './ldap-pool.js';
import { Cancel, type CancelSignal } from '../core/cancel.js';
import { LdapProbeLoop } from './ldap-probe.js';
import { LdapServerSet, type LdapServer } from './ldap-servers.js';
import { isAcceptableName } from './names.js';

export { buildFilter, escapeFilterValue, parseFilter } from './ldap-filter.js';
export type { LdapClient } from './ldap-pool.js';
export type LdapClientFactory = (options: ClientOptions) => LdapClient;

interface Found { entry: Entry; server: LdapServer }
type Op<T> = (client: LdapClient, server: LdapServer) => Promise<T>;

// RFC 4511 §4.1.9 result codes that mean "this server cannot serve now", so another server should be tried.
const SERVER_TROUBLE_CODES = new Set([51 /* busy */, 52 /* unavailable */, 80 /* other */]);

/** The server did not serve (no answer in time, connection refused or lost, busy): try another, mark this one down. */
class LdapFailure extends Error {
  constructor(readonly reason: string, readonly timedOut = false) { super(reason); }
}

const isAnswer = (e: unknown): e is ResultCodeError => e instanceof ResultCodeError && !SERVER_TROUBLE_CODES.has(e.code);

export class LdapDirectory implements Directory {
  private readonly servers: LdapServerSet;
  private readonly pools: LdapPool[];
  private readonly probes: LdapProbeLoop;
  private readonly log: Logger;
  private closed = false;
  /** Servers whose last probe had the service bind rejected (logged once per episode). */
  private readonly serviceBindRejected = new Set<LdapServer>();

  constructor(
    private readonly config: LdapConfig,
    logger: Logger,
    private readonly clock: () => number = Date.now,
    private readonly createClient: LdapClientFactory = (o) => new Client(o),
  ) {
    this.log = logger.child({ component: 'ldap' });
    // ldapts treats 0 as "wait forever", which would hang logins on a stalled server.
    if (config.timeoutMs <= 0 || config.connectTimeoutMs <= 0) throw new ProxyError('CONFIG_INVALID', 'directory.ldap.timeoutMs and connectTimeoutMs must be > 0');
    for (const [key, template] of [['filter', config.filter], ['recipientFilter', config.recipientFilter]] as const) {
      try { parseFilter(buildFilter(template, 'probe')); } catch (e) {
        throw new ProxyError('CONFIG_INVALID', `directory.ldap.${key} is not a valid LDAP filter: ${(e as Error).message}`);
      }
    }
    this.servers = new LdapServerSet(config.urls, config.failbackAfterMs, clock());
    this.pools = this.servers.all.map((server) => new LdapPool({
      size: config.pool.size,
      idleTimeoutMs: config.pool.idleTimeoutMs,
      open: (kind) => this.open(server, kind),
      now: clock,
    }));
    for (const s of this.servers.all) ldapUp.set({ server: s.url }, 1);
    this.probes = new LdapProbeLoop({
      servers: this.servers.all,
      intervalMs: config.probeIntervalMs,
      downIntervalMs: config.probeDownIntervalMs,
      probe: (s) => this.probe(s),
      afterProbe: (s) => this.pools[s.index]!.sweep(),
    });
  }

  /** Start probing every server (bind + base search) on its interval. */
  start(): this {
    if (!this.closed) this.probes.start();
    return this;
  }

  /** Probe every server once now (tests, and the first probe at start). */
  probeAll(): Promise<void> {
    return this.probes.probeAll();
  }

  async authenticate(credentials: Credentials): Promise<AuthResult> {
    // Bearer tokens are checked by the OAuth layer in front of this directory (directory/oauth.ts), never here.
    if (isTokenCredentials(credentials)) return { ok: false };
    const { user, password } = credentials;
    // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which some servers treat as success.
    if (password === '' || !isAcceptableName(user)) return { ok: false };
    const started = performance.now();
    return this.timed('authenticate', async () => {
      const found = await this.searchOne(this.config.filter, user, this.budgetMs());
      if (!found) return { ok: false } as const;
      const left = Math.max(1, this.budgetMs() - (performance.now() - started));
      if (!(await this.bindAsUser(found, password, left))) return { ok: false } as const;
      return { ok: true, account: this.toAccount(found.entry, user) } as const;
    }, (r) => (r.ok ? 'ok' : 'rejected'));
  }

  lookup(name: string): Promise<Account | null> {
    return this.lookupWith('lookup', this.config.filter, name);
  }

  lookupRecipient(address: string): Promise<Account | null> {
    return this.lookupWith('lookupRecipient', this.config.recipientFilter, address);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.probes.stop();
    for (const p of this.pools) p.destroy();
  }

  /** Pool occupancy per server (diagnostics, tests). */
  poolStats(): Array<{ server: string; up: boolean } & ReturnType<LdapPool['stats']>> {
    return this.servers.all.map((s) => ({ server: s.url, up: s.up, ...this.pools[s.index]!.stats() }));
  }

  /** One request's time across servers: a hung first server costs the hedge delay, a hung last one timeoutMs. */
  private budgetMs(): number {
    return this.config.timeoutMs + this.config.hedgeDelayMs;
  }

  private async lookupWith(operation: string, template: string, name: string): Promise<Account | null> {
    if (!isAcceptableName(name)) return null;
    return this.timed(operation, async () => {
      const found = await this.searchOne(template, name, this.budgetMs());
      return found ? this.toAccount(found.entry, name) : null;
    }, (a) => (a ? 'ok' : 'not_found'));
  }

  private async timed<T>(operation: string, fn: () => Promise<T>, label: (r: T) => string): Promise<T> {
    const end = directoryRequestSeconds.startTimer({ operation });
    try {
      const r = await fn();
      end({ result: label(r) });
      return r;
    } catch (e) {
      end({ result: 'unavailable' });
      throw e;
    }
  }

  /** Search with the service account; exactly one entry counts, none or several (ambiguous) is no match. */
  private async searchOne(template: string, name: string, budgetMs: number): Promise<Found | null> {
    const filterText = buildFilter(template, name);
    const filter = parseFilter(filterText);
    const attributes = [this.config.loginAttribute, 'mail', this.config.hostAttribute];
    return this.hedged('service', async (client, server) => {
      const { searchEntries } = await client.search(this.config.baseDN, { scope: 'sub', filter, attributes, sizeLimit: 2 });
      if (searchEntries.length > 1) {
        this.log.warn({ filter: sanitize(filterText), server: server.url }, 'ambiguous login: several entries match, treated as no match');
        return null;
      }
      const entry = searchEntries[0];
      return entry ? { entry, server } : null;
    }, budgetMs);
  }

  /** Verify the password by binding as the entry's DN on a pooled bind connection, the server that found it first. */
  private bindAsUser(found: Found, password: string, budgetMs: number): Promise<boolean> {
    return this.hedged('bind', async (client) => {
      try {
        await client.bind(found.entry.dn, password);
        return true;
      } catch (e) {
        if (e instanceof InvalidCredentialsError) return false;
        throw e;
      }
    }, budgetMs, found.server);
  }

  /**
   * Run `op` on the servers that are up, preferred first: the next server is asked too when the previous one failed
   * or has not answered within hedgeDelayMs; the first answer wins. Each attempt goes on in the background until it
   * answers or times out, so a hung server is marked down (for every request at once) even when a hedge won.
   * Down servers are not tried at all; with none up the request fails at once.
   */
  private hedged<T>(kind: PoolKind, op: Op<T>, budgetMs: number, prefer?: LdapServer): Promise<T> {
    let order = this.servers.usable(this.clock());
    if (prefer && order.includes(prefer)) order = [prefer, ...order.filter((s) => s !== prefer)];
    if (order.length === 0) {
      return Promise.reject(new ProxyError('DIRECTORY_UNAVAILABLE', `no LDAP server is up: ${this.servers.all.map((s) => `${s.url}: ${s.reason ?? 'down'}`).join('; ')}`));
    }
    const abort = new Cancel();
    return new Promise<T>((resolve, reject) => {
      const reasons: string[] = [];
      let next = 0;
      let running = 0;
      let done = false;
      let hedgeTimer: NodeJS.Timeout | undefined;
      const finish = (settle: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(overall);
        clearTimeout(hedgeTimer);
        abort.abort();
        settle();
      };
      const overall = setTimeout(() => finish(() => reject(new ProxyError('DIRECTORY_UNAVAILABLE', `no LDAP answer within ${budgetMs} ms${reasons.length ? `: ${reasons.join('; ')}` : ''}`))), budgetMs);
      const launch = (): void => {
        clearTimeout(hedgeTimer);
        if (done) return;
        let server = order[next++];
        // Marked down by another request since this one started: skip it like the rest do.
        while (server && !server.up) { reasons.push(`${server.url}: down`); server = order[next++]; }
        if (!server) {
          if (running === 0) finish(() => reject(new ProxyError('DIRECTORY_UNAVAILABLE', reasons.join('; '))));
          return;
        }
        running++;
        this.attempt(server, kind, op, abort).then((value) => { running--; finish(() => resolve(value)); }, (e: unknown) => {
          running--;
          if (e instanceof LdapFailure) { reasons.push(`${server.url}: ${e.reason}`); launch(); } else if (!(e instanceof LeaseAborted)) finish(() => reject(e));
        });
        if (this.config.hedgeDelayMs > 0 && next < order.length) hedgeTimer = setTimeout(launch, this.config.hedgeDelayMs);
      };
      launch();
    });
  }

  /**
   * One server's part of a request, under timeoutMs from the moment a connection is lent (waiting for a free bind
   * connection is local, not the server's time). A kept connection that turns out lost is replaced once at once.
   * Rejects with LdapFailure (server marked down), ProxyError (the server answered with an error) or LeaseAborted.
   */
  private async attempt<T>(server: LdapServer, kind: PoolKind, op: Op<T>, signal: CancelSignal): Promise<T> {
    const pool = this.pools[server.index]!;
    for (let round = 0; ; round++) {
      const lease = await pool.acquire(kind, signal, round > 0);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new LdapFailure(`no answer within ${this.config.timeoutMs} ms`, true)), this.config.timeoutMs);
      });
      let stage = 'open';
      try {
        const client = await Promise.race([lease.ready, timeout]);
        stage = 'op';
        const value = await Promise.race([op(client, server), timeout]);
        lease.release(true);
        return value;
      } catch (e) {
        if (isAnswer(e)) {
          lease.release(stage === 'op');
          throw this.answerError(e, server, kind, stage);
        }
        lease.release(false);
        // This host could not open the connection (descriptors, ports, buffers): the server was never asked, so it is
        // not marked down (its pooled connections stay); the request fails with the temporary error.
        if (isLocalResourceError(e)) throw new ProxyError('LOCAL_RESOURCES', `${server.url}: ${describe(e)}`, { cause: e });
        const failure = e instanceof LdapFailure ? e : new LdapFailure(describe(e));
        // A kept connection closed by the server (idle timeout, restart) is not the server failing now.
        if (round === 0 && !lease.fresh && !failure.timedOut && !signal.aborted) continue;
        this.markDown(server, failure.reason);
        throw failure;
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** The server answered with a result code: it is up, the request fails (misconfiguration, ACL). */
  private answerError(e: ResultCodeError, server: LdapServer, kind: PoolKind, stage: string): ProxyError {
    const what = stage === 'open' && e instanceof InvalidCredentialsError ? 'service account bind rejected (check bindDN/bindPassword)'
      : kind === 'bind' ? `user bind refused with result ${e.code}` : `result ${e.code}`;
    this.log.error({ server: server.url, code: e.code }, `LDAP request failed: ${what}`);
    return new ProxyError('DIRECTORY_UNAVAILABLE', `${server.url}: ${what}`, { cause: e });
  }

  /**
   * One probe: fresh connection, StartTLS when configured, service bind, base-object search; any LDAP answer is "up".
   * A rejected service bind (the account's password rotated in LDAP but not here) leaves the server up, since connections
   * bound before keep working, but is logged as an error at once and again after every good probe, so it shows before the
   * pooled connections are reopened (a slapd restart) and every uncached login fails.
   */
  private async probe(server: LdapServer): Promise<void> {
    if (this.closed) return;
    const client = this.createClient(this.clientOptions(server.url));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LdapFailure(`probe: no answer within ${this.config.timeoutMs} ms`, true)), this.config.timeoutMs);
    });
    let binding = false;
    try {
      await Promise.race([(async () => {
        await this.secure(client, server.url);
        binding = true;
        await client.bind(this.config.bindDN, this.config.bindPassword ?? '');
        binding = false;
        await client.search(this.config.baseDN, { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'], sizeLimit: 1 });
      })(), timeout]);
      this.serviceBindRejected.delete(server);
      ldapServiceBindOk.set({ server: server.url }, 1);
      this.markUp(server);
    } catch (e) {
      if (binding && e instanceof InvalidCredentialsError && !this.closed) ldapServiceBindOk.set({ server: server.url }, 0);
      if (binding && e instanceof InvalidCredentialsError && !this.closed && !this.serviceBindRejected.has(server)) {
        this.serviceBindRejected.add(server);
        this.log.error({ server: server.url, bindDN: this.config.bindDN, code: e.code }, 'LDAP probe: service account bind rejected (check bindDN/bindPassword); connections bound before keep working until they are reopened');
      }
      if (isAnswer(e)) this.markUp(server);
      // The probe could not open its connection on this host: no verdict on the server (as backend probes, result "local").
      else if (isLocalResourceError(e)) this.log.warn({ event: 'ldap_probe_skipped_local', server: server.url, error: describe(e) }, 'LDAP probe could not connect: out of local resources, server state kept');
      else if (!this.closed) this.markDown(server, e instanceof LdapFailure ? e.reason : `probe: ${describe(e)}`);
    } finally {
      clearTimeout(timer);
      void closeQuietly(client);
    }
  }

  /** A connection to `server` for the pool: secured, and bound as the service account (anonymously without bindDN). */
  private open(server: LdapServer, kind: PoolKind) {
    const client = this.createClient(this.clientOptions(server.url));
    const ready = (async () => {
      await this.secure(client, server.url);
      // Binding right away also connects, so concurrent first searches never race to open the socket.
      if (kind === 'service') await client.bind(this.config.bindDN, this.config.bindPassword ?? '');
      return client;
    })();
    return { client, ready };
  }

  private usesStartTls(url: string): boolean {
    return this.config.startTls && url.startsWith('ldap://');
  }

  /**
   * StartTLS on a fresh ldap:// connection when configured. ldapts puts no deadline on the TLS handshake after the
   * StartTLS extended operation, so a server that stalls there fails after timeoutMs like any other request.
   */
  private async secure(client: LdapClient, url: string): Promise<void> {
    if (!this.usesStartTls(url)) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => { reject(new Error(`StartTLS timed out after ${this.config.timeoutMs} ms`)); void closeQuietly(client); }, this.config.timeoutMs);
    });
    try {
      await Promise.race([client.startTLS(this.tlsOptions(url)), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Certificate checked against the URL's host name with the configured CA (or the system's), TLS 1.2 or newer. */
  private tlsOptions(url: string): ConnectionOptions {
    const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
    return backendTlsOptions({ servername: host, tlsVerify: this.config.tlsVerify, ...(this.config.tlsCa ? { tlsCa: this.config.tlsCa } : {}) });
  }

  /**
   * Every client connects once: a lost connection is replaced by the pool, never silently reopened by ldapts (which
   * would skip StartTLS and send the next bind's password in clear, or search unbound).
   */
  private clientOptions(url: string): ClientOptions {
    const options: ClientOptions = { url, timeout: this.config.timeoutMs, connectTimeout: this.config.connectTimeoutMs };
    let opened = false;
    const once = <F extends (...args: never[]) => unknown>(connect: F): F => ((...args: Parameters<F>) => {
      if (opened) throw new Error('LDAP connection lost');
      opened = true;
      return connect(...args);
    }) as F;
    // ldapts treats any tlsOptions as "use TLS", so they are only given for ldaps:// URLs (StartTLS passes its own).
    if (url.startsWith('ldaps://')) {
      options.tlsOptions = this.tlsOptions(url);
      options.createSecureConnection = once(tls.connect);
    } else {
      options.createConnection = once(net.connect);
    }
    return options;
  }

  private markUp(server: LdapServer): void {
    ldapUp.set({ server: server.url }, 1);
    if (this.servers.markUp(server, this.clock())) this.log.info({ server: server.url }, 'LDAP server answering again');
  }

  private markDown(server: LdapServer, reason: string): void {
    if (this.closed) return;
    ldapUp.set({ server: server.url }, 0);
    if (!this.servers.markDown(server, reason, this.clock())) return;
    this.log.warn({ server: server.url, reason }, 'LDAP server failed: skipped until a probe succeeds');
    if (this.config.pool.onServerFailure === 'close-all') this.pools[server.index]!.closeAll();
    this.probes.hurry(server);
  }

  private toAccount(entry: Entry, typed: string): Account {
    const login = firstValue(entry, this.config.loginAttribute) ?? typed;
    const mail = firstValue(entry, 'mail');
    return { login, host: firstValue(entry, this.config.hostAttribute) ?? null, dn: entry.dn, ...(mail !== undefined ? { mail } : {}) };
  }
}

/** First value of an attribute, matched case-insensitively (servers answer with their own spelling, RFC 4512 §2.5). */
function firstValue(entry: Entry, attribute: string): string | undefined {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
  const raw = key === undefined ? undefined : entry[key];
  const v = Array.isArray(raw) ? raw[0] : raw;
  if (v === undefined) return undefined;
  const s = Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  return s === '' ? undefined : s;
}

function describe(e: unknown): string {
  if (e instanceof ResultCodeError) return `result ${e.code}`;
  const err = e as NodeJS.ErrnoException;
  return sanitize(err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? e), 160);
}
