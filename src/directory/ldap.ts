// Owns the LDAP directory: RFC 4515 filter escaping, service-account searches, user binds, server failover; the only ldapts importer.
// Must not cache, retry a request on the same server, or let an ldapts error escape; every failure becomes ProxyError or { ok: false }.
import {
  AndFilter, ApproximateFilter, Client, EqualityFilter, ExtensibleFilter, FilterParser, GreaterThanEqualsFilter,
  InvalidCredentialsError, LessThanEqualsFilter, NotFilter, OrFilter, ResultCodeError, SubstringFilter,
  type ClientOptions, type Entry, type Filter,
} from 'ldapts';
import type { LdapConfig } from '../config/schema.js';
import { ProxyError, sanitize } from '../errors.js';
import type { Logger } from '../log.js';
import { directoryRequestSeconds, ldapUp } from '../metrics.js';
import { isTokenCredentials, type Credentials } from '../core/types.js';
import type { Account, AuthResult, Directory } from './directory.js';
import { isAcceptableName } from './names.js';
import { backendTlsOptions } from '../core/tls.js';
import type { ConnectionOptions } from 'node:tls';

/**
 * RFC 4515 §3 value encoding: NUL, '(', ')', '*' and '\' MUST be written as '\' + two hex digits; we also escape every
 * other control and every non-ASCII octet (allowed by §3), so the filter text is plain ASCII and unambiguous in logs.
 */
export function escapeFilterValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const special = byte < 0x20 || byte >= 0x7f || byte === 0x28 || byte === 0x29 || byte === 0x2a || byte === 0x5c;
    out += special ? `\\${byte.toString(16).padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

/** Substitute every %u of a filter template with the escaped value. */
export function buildFilter(template: string, value: string): string {
  return template.replaceAll('%u', escapeFilterValue(value));
}

/**
 * Parse filter text into an ldapts Filter whose values carry the right UTF-8 octets.
 * ldapts' parser turns each '\XX' escape into one UTF-16 unit and re-encodes the value as UTF-8, which would
 * double-encode escaped multi-byte characters; so every value is made of escaped octets first and decoded here.
 */
export function parseFilter(text: string): Filter {
  const octetsOnly = text.replace(/[^\x00-\x7f]/gu, (ch) => escapeFilterValue(ch));
  const filter = FilterParser.parseString(octetsOnly);
  fixOctets(filter);
  return filter;
}

function utf8(octets: string): string {
  return Buffer.from(octets, 'latin1').toString('utf8');
}

function fixOctets(f: Filter): void {
  if (f instanceof AndFilter || f instanceof OrFilter) f.filters.forEach(fixOctets);
  else if (f instanceof NotFilter) fixOctets(f.filter);
  else if (f instanceof SubstringFilter) {
    f.initial = utf8(f.initial);
    f.final = utf8(f.final);
    f.any = f.any.map(utf8);
  } else if (f instanceof EqualityFilter || f instanceof ApproximateFilter || f instanceof GreaterThanEqualsFilter
    || f instanceof LessThanEqualsFilter || f instanceof ExtensibleFilter) {
    if (typeof f.value === 'string') f.value = utf8(f.value);
  }
}

/** The parts of an ldapts Client this module uses (tests substitute a fake). */
export type LdapClient = Pick<Client, 'bind' | 'search' | 'unbind' | 'startTLS' | 'isConnected'>;
export type LdapClientFactory = (options: ClientOptions) => LdapClient;

/** `retrying`: a request is trying this failed server now; the others skip it instead of each waiting out its timeout. */
interface Server { url: string; failedAt: number | null; retrying: boolean }
/** `established`: ready resolved on a connection that was opened (StartTLS or a bind), so a later !isConnected means it was lost. */
interface ServiceConnection { server: Server; client: LdapClient; ready: Promise<void>; established: boolean }
interface Found { entry: Entry; server: Server }

// RFC 4511 §4.1.9 result codes that mean "this server cannot serve now", so another server should be tried.
const SERVER_TROUBLE_CODES = new Set([51 /* busy */, 52 /* unavailable */, 80 /* other */]);

class LdapFailure extends Error {
  constructor(readonly server: Server, readonly reason: string) { super(reason); }
}

export class LdapDirectory implements Directory {
  private readonly servers: Server[];
  private readonly searchFilter: string;
  private readonly recipientFilter: string;
  private service: ServiceConnection | null = null;
  private readonly log: Logger;

  constructor(
    private readonly config: LdapConfig,
    logger: Logger,
    private readonly clock: () => number = Date.now,
    private readonly createClient: LdapClientFactory = (o) => new Client(o),
  ) {
    this.log = logger.child({ component: 'ldap' });
    this.servers = config.urls.map((url) => ({ url, failedAt: null, retrying: false }));
    this.searchFilter = config.filter;
    this.recipientFilter = config.recipientFilter;
    // ldapts treats 0 as "wait forever", which would hang logins on a stalled server.
    if (config.timeoutMs <= 0 || config.connectTimeoutMs <= 0) throw new ProxyError('CONFIG_INVALID', 'directory.ldap.timeoutMs and connectTimeoutMs must be > 0');
    for (const [key, template] of [['filter', config.filter], ['recipientFilter', config.recipientFilter]] as const) {
      try { parseFilter(buildFilter(template, 'probe')); } catch (e) {
        throw new ProxyError('CONFIG_INVALID', `directory.ldap.${key} is not a valid LDAP filter: ${(e as Error).message}`);
      }
    }
  }

  async authenticate(credentials: Credentials): Promise<AuthResult> {
    // Bearer tokens are checked by the OAuth layer in front of this directory (directory/oauth.ts), never here.
    if (isTokenCredentials(credentials)) return { ok: false };
    const { user, password } = credentials;
    // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which some servers treat as success.
    if (password === '' || !isAcceptableName(user)) return { ok: false };
    return this.timed('authenticate', async () => {
      const found = await this.searchOne(this.searchFilter, user);
      if (!found) return { ok: false } as const;
      if (!(await this.bindAsUser(found, password))) return { ok: false } as const;
      return { ok: true, account: this.toAccount(found.entry, user) } as const;
    }, (r) => (r.ok ? 'ok' : 'rejected'));
  }

  lookup(name: string): Promise<Account | null> {
    return this.lookupWith('lookup', this.searchFilter, name);
  }

  lookupRecipient(address: string): Promise<Account | null> {
    return this.lookupWith('lookupRecipient', this.recipientFilter, address);
  }

  async close(): Promise<void> {
    const s = this.service;
    this.service = null;
    if (s) await closeQuietly(s.client);
  }

  private async lookupWith(operation: string, template: string, name: string): Promise<Account | null> {
    if (!isAcceptableName(name)) return null;
    return this.timed(operation, async () => {
      const found = await this.searchOne(template, name);
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
  private async searchOne(template: string, name: string): Promise<Found | null> {
    const filterText = buildFilter(template, name);
    const filter = parseFilter(filterText);
    const attributes = [this.config.loginAttribute, 'mail', this.config.hostAttribute];
    return this.withServer(async (client, server) => {
      const { searchEntries } = await client.search(this.config.baseDN, { scope: 'sub', filter, attributes, sizeLimit: 2 });
      if (searchEntries.length > 1) {
        this.log.warn({ filter: sanitize(filterText), server: server.url }, 'ambiguous login: several entries match, treated as no match');
        return null;
      }
      const entry = searchEntries[0];
      return entry ? { entry, server } : null;
    });
  }

  /** Verify the password by binding as the entry's DN on a fresh connection to the server that found it. */
  private async bindAsUser(found: Found, password: string): Promise<boolean> {
    const client = this.createClient(this.clientOptions(found.server.url));
    try {
      await this.secure(client, found.server.url);
      await client.bind(found.entry.dn, password);
      return true;
    } catch (e) {
      if (e instanceof InvalidCredentialsError) return false;
      if (e instanceof ResultCodeError && !SERVER_TROUBLE_CODES.has(e.code)) {
        throw new ProxyError('DIRECTORY_UNAVAILABLE', `user bind refused with result ${e.code} by ${found.server.url}`, { cause: e });
      }
      this.markFailed(found.server, describe(e));
      throw new ProxyError('DIRECTORY_UNAVAILABLE', `user bind on ${found.server.url} failed: ${describe(e)}`, { cause: e });
    } finally {
      void closeQuietly(client);
    }
  }

  /**
   * Run one operation on the service connection, trying each server at most once per request: healthy servers
   * in configured order, then failed ones (oldest failure first). The first server becomes healthy again
   * failbackAfterMs after it failed, which moves the service connection back to it. A server that failed is retried
   * by one request at a time: while that request runs, the others skip it (and, when no other server answers, fail
   * at once as unavailable) instead of each waiting out the timeout of a server that accepts TCP but never answers.
   */
  private async withServer<T>(op: (client: LdapClient, server: Server) => Promise<T>): Promise<T> {
    const reasons: string[] = [];
    for (const server of this.serverOrder()) {
      const retry = server.failedAt !== null;
      if (retry && server.retrying) {
        reasons.push(`${server.url}: failed, being retried by another request`);
        continue;
      }
      if (retry) server.retrying = true;
      try {
        const conn = this.serviceFor(server);
        await conn.ready;
        const result = await op(conn.client, server);
        this.markUp(server);
        return result;
      } catch (e) {
        const failure = this.classify(e, server);
        if (failure instanceof ProxyError) throw failure;
        reasons.push(`${server.url}: ${failure.reason}`);
      } finally {
        if (retry) server.retrying = false;
      }
    }
    throw new ProxyError('DIRECTORY_UNAVAILABLE', reasons.join('; '));
  }

  /** A result code is an answer (server up, request fails); anything else is a server failure to fail over from. */
  private classify(e: unknown, server: Server): ProxyError | LdapFailure {
    if (e instanceof ProxyError) return e;
    if (e instanceof ResultCodeError && !SERVER_TROUBLE_CODES.has(e.code)) {
      this.markUp(server);
      const what = e instanceof InvalidCredentialsError ? 'service account bind rejected (check bindDN/bindPassword)' : `result ${e.code}`;
      this.log.error({ server: server.url, code: e.code }, `LDAP request failed: ${what}`);
      return new ProxyError('DIRECTORY_UNAVAILABLE', `${server.url}: ${what}`, { cause: e });
    }
    this.markFailed(server, describe(e));
    return new LdapFailure(server, describe(e));
  }

  private serverOrder(): Server[] {
    const now = this.clock();
    const healthy = this.servers.filter((s) => s.failedAt === null || now - s.failedAt >= this.config.failbackAfterMs);
    const failed = this.servers.filter((s) => !healthy.includes(s)).sort((a, b) => a.failedAt! - b.failedAt!);
    return [...healthy, ...failed];
  }

  /**
   * The shared service connection to this server, connecting (StartTLS when configured) and binding once; concurrent
   * callers wait on it. A connection that was lost is replaced rather than left to ldapts' silent reconnect, which
   * would not redo StartTLS (ldapts then refuses to replay the bind, so the search would run anonymously in clear).
   */
  private serviceFor(server: Server): ServiceConnection {
    const current = this.service;
    if (current?.server === server && !(current.established && !current.client.isConnected)) return current;
    // In-flight requests on the old connection may still finish; closing it gives them its own error.
    if (current) setTimeout(() => void closeQuietly(current.client), this.config.timeoutMs).unref();
    const client = this.createClient({ ...this.clientOptions(server.url), autoRebind: true });
    const opened = this.usesStartTls(server.url) || this.config.bindDN !== '';
    const ready = (async () => {
      await this.secure(client, server.url);
      if (this.config.bindDN) await client.bind(this.config.bindDN, this.config.bindPassword ?? '');
    })();
    const conn: ServiceConnection = { server, client, ready, established: false };
    ready.then(() => { conn.established = opened; }, () => { if (this.service === conn) this.service = null; void closeQuietly(client); });
    this.service = conn;
    return conn;
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

  private clientOptions(url: string): ClientOptions {
    const options: ClientOptions = { url, timeout: this.config.timeoutMs, connectTimeout: this.config.connectTimeoutMs };
    // ldapts treats any tlsOptions as "use TLS", so they are only given for ldaps:// URLs (StartTLS passes its own).
    if (url.startsWith('ldaps://')) options.tlsOptions = this.tlsOptions(url);
    return options;
  }

  private markUp(server: Server): void {
    if (server.failedAt !== null) this.log.info({ server: server.url }, 'LDAP server answering again');
    server.failedAt = null;
    ldapUp.set({ server: server.url }, 1);
  }

  private markFailed(server: Server, reason: string): void {
    if (server.failedAt === null) this.log.warn({ server: server.url, reason }, 'LDAP server failed');
    server.failedAt = this.clock();
    ldapUp.set({ server: server.url }, 0);
    if (this.service?.server === server) {
      const s = this.service;
      this.service = null;
      void closeQuietly(s.client);
    }
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

async function closeQuietly(client: LdapClient): Promise<void> {
  try { await client.unbind(); } catch { /* already gone */ }
}
