// Owns the one configuration schema: every key, its type, default and bound; Config types derive from it.
// Must not read files or environment (load.ts does) nor hold behaviour beyond validation.
import { isIP } from 'node:net';
import { z } from 'zod';
import { tierSchema } from './tier-schema.js';
import { secretFileHolders } from './secret-files.js';

const port = z.number().int().min(0).max(65535);
const ms = (def: number) => z.number().int().min(0).default(def);
/** `address` or `address/prefix`, IPv4 or IPv6 (checked here so a typo fails at load, not at the first connection). */
function isCidr(v: string): boolean {
  const [addr, prefix, ...rest] = v.split('/');
  const family = isIP(addr ?? '');
  if (!family || rest.length) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}
const cidrList = z.array(z.string().refine(isCidr, 'must be an IP address or CIDR network (e.g. 10.0.0.0/8)')).default([]);

export const TLS_MODES = ['none', 'starttls', 'implicit'] as const;
/** `sieve`: ManageSieve (RFC 5804, port 4190); `lmtp`: LMTP front-end for MTAs (RFC 2033). */
export const PROTOCOLS = ['imap', 'pop3', 'submission', 'smtp', 'sieve', 'lmtp'] as const;
export type ListenerProtocol = (typeof PROTOCOLS)[number];

/** A secret given inline or read from a file (`passwordFile`-style keys are resolved by load.ts). */
const secret = z.string();

const listenerSchema = z.strictObject({
  protocol: z.enum(PROTOCOLS),
  address: z.string().default('0.0.0.0'),
  port,
  /** starttls: plain port offering STARTTLS/STLS; implicit: TLS from the first byte (993/995/465). */
  tls: z.enum(TLS_MODES).default('starttls'),
  /** Accept HAProxy PROXY protocol v1/v2 headers, only from proxyTrustedNetworks. */
  proxyProtocol: z.boolean().default(false),
  proxyTrustedNetworks: cidrList,
  /** Open connections on this listener at most (0 = no limit); further ones get a temporary error and close. */
  maxConnections: z.number().int().min(0).optional(),
  /** Open connections per client address at most (0 = no limit). Counts the PROXY-header address behind a balancer; per worker process. */
  maxConnectionsPerIp: z.number().int().min(0).optional(),
  /** How long a trusted sender may take to deliver the whole PROXY header; unset = 5000 ms. */
  proxyHeaderTimeoutMs: z.number().int().min(1).optional(),
});

/** An extra certificate served to clients asking (SNI) for one of `names`: exact names or `*.example.com` wildcards. */
const sniCertSchema = z.strictObject({
  names: z.array(z.string().min(1).refine((n) => !n.includes('*') || /^\*\.[^*]+$/.test(n), 'a wildcard must be the whole first label: *.example.com')).min(1),
  certFile: z.string(),
  keyFile: z.string(),
  /** Label in mailproxy_tls_certificate_expiry_seconds and logs; default the certificate's CN. */
  name: z.string().optional(),
});

const tlsSchema = z.strictObject({
  /** Default certificate: served when the client sends no SNI or a name no `sni` entry covers. */
  certFile: z.string(),
  keyFile: z.string(),
  /** Label of the default certificate in metrics; default its CN. */
  name: z.string().optional(),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  ciphers: z.string().optional(),
  /** More certificates chosen by the client's SNI name; first exact match, then first wildcard match, else the default. */
  sni: z.array(sniCertSchema).default([]),
  /** check-config, start and reload warn when a certificate expires within this many days. */
  expiryWarningDays: z.number().int().min(0).default(14),
  /** ALPACA defence: refuse a handshake whose ALPN offer lacks the listener's protocol (imap, pop3, smtp, managesieve); no ALPN is fine. */
  strictAlpn: z.boolean().default(true),
});

const limitsSchema = z.strictObject({
  /** Longest pre-login command line in bytes (RFC 9051 §4 recommends ≥ 8192). */
  maxLineBytes: z.number().int().min(512).default(8192),
  /** Largest literal accepted before login (a password literal; messages are post-login). */
  maxLiteralBytes: z.number().int().min(64).default(8192),
  maxBadCommands: z.number().int().min(1).default(10),
  maxAuthAttempts: z.number().int().min(1).default(3),
  /** Whole pre-login phase: greeting to successful login. */
  preAuthDeadlineMs: ms(60_000),
  /** Relay idle timeout: RFC 9051 §5.4 requires ≥ 30 min for IMAP autologout. */
  idleTimeoutMs: ms(30 * 60_000),
  /** Delay before answering a failed login: slows guessing without blocking other clients. */
  authFailureDelayMs: ms(2000),
  /** Each further failure from the same client address doubles the delay, up to this (Dovecot auth_penalty style). */
  authFailureMaxDelayMs: ms(15_000),
});

const protocolSettings = z.strictObject({
  greeting: z.string().optional(),
  /** Refuse LOGIN/AUTH/USER before TLS on plain listeners (advertise LOGINDISABLED). */
  requireTlsForAuth: z.boolean().default(true),
  limits: limitsSchema.prefault({}),
});

const smtpSettings = z.strictObject({
  hostname: z.string().optional(),
  requireTlsForAuth: z.boolean().default(true),
  /** SIZE advertised and enforced (RFC 1870). */
  maxMessageBytes: z.number().int().min(1024).default(50 * 1024 * 1024),
  maxRecipients: z.number().int().min(1).default(100),
  maxErrors: z.number().int().min(1).default(10),
  /** Client inactivity before DATA and between DATA chunks (RFC 5321 §4.5.3.2 suggests 5/3/10 min). */
  commandTimeoutMs: ms(5 * 60_000),
  dataTimeoutMs: ms(10 * 60_000),
  authFailureDelayMs: ms(2000),
  authFailureMaxDelayMs: ms(15_000),
  /** Submission: relay to this host instead of the user's backend (host:port). */
  centralRelay: z.strictObject({ host: z.string(), port, tls: z.enum(TLS_MODES).default('none') }).optional(),
  /** Inbound: how to deliver to backends unless a backend says otherwise. */
  inboundDelivery: z.enum(['lmtp', 'smtp']).default('lmtp'),
});

const endpointSchema = z.strictObject({
  port,
  tls: z.enum(TLS_MODES).default('none'),
});

const backendSchema = z.strictObject({
  host: z.string(),
  imap: endpointSchema.optional(),
  pop3: endpointSchema.optional(),
  submission: endpointSchema.optional(),
  lmtp: endpointSchema.optional(),
  smtp: endpointSchema.optional(),
  /** ManageSieve endpoint (Dovecot Pigeonhole, 4190). */
  sieve: endpointSchema.optional(),
  /** Verify the backend's TLS certificate (off for self-signed lab backends). */
  tlsVerify: z.boolean().default(true),
  /** CA bundle (PEM file) that signs the backend certificates (internal CA); system CAs when unset. */
  tlsCaFile: z.string().optional(),
  /** The same as PEM text (filled from tlsCaFile by the loader). */
  tlsCa: z.string().optional(),
  /** TLS server name to send and verify; defaults to host. */
  tlsServerName: z.string().optional(),
  /** The backend trusts this proxy to forward the client address (Dovecot login_trusted_networks). */
  trustsProxy: z.boolean().default(false),
  /** How the client address reaches a trusting backend: IMAP ID / POP3+SMTP XCLIENT, or PROXY v2. */
  forwardClientAddress: z.enum(['native', 'proxy-v2', 'none']).default('native'),
  /** Backend name to use while this one is down and the standby's own probe shows it serving. */
  standby: z.string().optional(),
  inboundDelivery: z.enum(['lmtp', 'smtp']).optional(),
  /** Local addresses to bind connections to this backend to (least used first): each gives ~64k ports per backend endpoint. Default: the OS chooses. */
  sourceAddresses: z.array(z.string().refine((a) => isIP(a) !== 0, 'must be an IP address of this host')).default([]),
});

/** A pool member: a backend name (weight 1) or { backend, weight }. */
const poolMemberSchema = z.union([
  z.string().min(1),
  z.strictObject({ backend: z.string().min(1), weight: z.number().positive().max(1000).default(1) }),
]);

/** Backends sharing storage: a user goes to one member chosen by weighted rendezvous hashing (src/directory/pool-route.ts). */
const poolSchema = z.strictObject({
  members: z.array(poolMemberSchema).min(1, 'a pool needs at least one member'),
  /** A member that came back (or a new one) gets its users back once they have no live session, or after this long (their sessions are then closed). */
  moveBackAfterMs: ms(300_000),
  /** A member set to maintenance closes its users' sessions spread over this window; new sessions follow them until then. */
  drainWindowMs: ms(60_000),
});

const ldapSchema = z.strictObject({
  urls: z.array(z.string().regex(/^ldaps?:\/\//, 'must start with ldap:// or ldaps://')).min(1),
  bindDN: z.string(),
  bindPassword: secret.optional(),
  bindPasswordFile: z.string().optional(),
  baseDN: z.string(),
  /** %u is replaced by the RFC 4515-escaped login name. */
  filter: z.string().default('(&(objectClass=inetLocalMailRecipient)(|(uid=%u)(mail=%u)))'),
  /** Filter used to look up inbound recipients by address (%u = address). */
  recipientFilter: z.string().default('(&(objectClass=inetLocalMailRecipient)(|(mail=%u)(mailLocalAddress=%u)))'),
  hostAttribute: z.string().default('mailHost'),
  /** Attribute holding the name the backend knows the user by. */
  loginAttribute: z.string().default('uid'),
  /** A server that has not answered one operation within this is marked down (skipped by every request until a probe succeeds). Never 0. */
  timeoutMs: z.number().int().min(1).default(1000),
  connectTimeoutMs: z.number().int().min(1).default(1000),
  /** Ask the next server too when the first has not answered within this (0 = only after a failure). */
  hedgeDelayMs: ms(200),
  /** Every server is probed (service bind + base-object search) this often while up ... */
  probeIntervalMs: z.number().int().min(100).default(2000),
  /** ... and this often while down, so it is used again soon after it answers. */
  probeDownIntervalMs: z.number().int().min(50).default(500),
  pool: z.strictObject({
    /** Connections per server for user binds (one bind at a time each), kept open and reused; searches share one service connection. */
    size: z.number().int().min(1).default(4),
    /** An idle bind connection is closed after this. */
    idleTimeoutMs: ms(60_000),
    /** close-all: a server failure closes every pooled connection to it; close-one: only the connection that failed. */
    onServerFailure: z.enum(['close-all', 'close-one']).default('close-all'),
  }).prefault({}),
  tlsVerify: z.boolean().default(true),
  /** Upgrade ldap:// connections with StartTLS (RFC 4513 §3) before any bind or search; ldaps:// URLs are TLS already. */
  startTls: z.boolean().default(false),
  /** CA bundle (PEM file) that signs the LDAP servers' certificates (internal CA); system CAs when unset. */
  tlsCaFile: z.string().optional(),
  /** The same as PEM text (filled from tlsCaFile by the loader). */
  tlsCa: z.string().optional(),
  /** A server that came back is preferred over the others again only after answering probes this long. */
  failbackAfterMs: ms(30_000),
});

const staticDirSchema = z.strictObject({ file: z.string() });

const cacheSchema = z.strictObject({
  enabled: z.boolean().default(true),
  maxEntries: z.number().int().min(1).default(100_000),
  ttlMs: ms(60_000),
  negativeTtlMs: ms(10_000),
  /** How long a last-good route may be served while the directory fails. */
  maxStaleMs: ms(3_600_000),
});

const directorySchema = z.strictObject({
  type: z.enum(['ldap', 'static']),
  ldap: ldapSchema.optional(),
  static: staticDirSchema.optional(),
  cache: cacheSchema.prefault({}),
}).refine((d) => (d.type === 'ldap' ? !!d.ldap : !!d.static), { message: 'directory.type needs its matching section (directory.ldap or directory.static)' });

// --- OAuth 2.0 bearer tokens (OAUTHBEARER RFC 7628, XOAUTH2) — issue 14 ---
const jwtSchema = z.strictObject({
  /** Signing keys as a JWKS document: a file (re-read when it changes) or an HTTPS URL (cached). Exactly one. */
  jwksFile: z.string().optional(),
  jwksUrl: z.string().regex(/^https:\/\//, 'must be an https:// URL').optional(),
  /** How long a fetched JWKS is used before it is fetched again. */
  jwksCacheMs: ms(300_000),
  /** A token naming an unknown key id (key rotation) refetches the JWKS, at most this often. */
  jwksRefetchMinMs: ms(30_000),
  /** Required `iss` claim. */
  issuer: z.string().min(1),
  /** Accepted `aud` values (the token needs one of them). */
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  /** Accepted signature algorithms (never "none"; HMAC is not accepted: the proxy holds no shared secrets). */
  algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).min(1).default(['RS256', 'PS256', 'ES256', 'EdDSA']),
  /** Allowed clock skew for exp/nbf/iat. */
  clockToleranceSec: z.number().int().min(0).default(30),
  /**
   * Required `typ` header, e.g. "at+jwt" (RFC 9068 §4; "application/at+jwt" matches too). Unset: any typ, because many
   * providers sign access tokens as plain "JWT"; then an ID token whose audience is listed is accepted as well.
   */
  type: z.string().min(1).optional(),
}).refine((j) => !!j.jwksFile !== !!j.jwksUrl, { message: 'oauth.jwt needs exactly one of jwksFile or jwksUrl' });

const introspectionSchema = z.strictObject({
  /** RFC 7662 endpoint (POST token=…, client authentication with HTTP Basic). */
  url: z.string().regex(/^https:\/\//, 'must be an https:// URL'),
  clientId: z.string().min(1),
  clientSecret: secret.optional(),
  clientSecretFile: z.string().optional(),
  /** An active verdict is reused for this long (never past the token's exp), keyed by a keyed hash of the token. 0 = ask every time. */
  cacheMs: ms(60_000),
  /** Optional checks on the introspection answer. */
  issuer: z.string().optional(),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
}).refine((i) => !!(i.clientSecret ?? i.clientSecretFile), { message: 'oauth.introspection needs clientSecret or clientSecretFile' });

const oauthSchema = z.strictObject({
  /** SASL mechanisms offered to clients (only when this section exists). */
  mechanisms: z.array(z.enum(['OAUTHBEARER', 'XOAUTH2'])).min(1).default(['OAUTHBEARER', 'XOAUTH2']),
  /** Claim naming the user; its value is looked up in the directory like a login name (e.g. email, preferred_username, sub). */
  userClaim: z.string().min(1).default('email'),
  /** Validate tokens locally (JWT signature against a JWKS) … */
  jwt: jwtSchema.optional(),
  /** … or ask the identity provider (RFC 7662 introspection). Exactly one. */
  introspection: introspectionSchema.optional(),
  /** CA bundle (PEM file) for the JWKS URL / introspection endpoint (internal CA); system CAs when unset. */
  tlsCaFile: z.string().optional(),
  /** The same as PEM text (filled from tlsCaFile by the loader). */
  tlsCa: z.string().optional(),
  /** Deadline for one JWKS fetch or introspection request; past it the client gets the temporary error. */
  timeoutMs: z.number().int().min(1).default(5000),
  /** Backend login: pass the client's mechanism and token on (Dovecot oauth2 passdb), or use backendLogin's master user. */
  backendLogin: z.enum(['token', 'master']).default('token'),
  /** Sent in the RFC 7628 error challenge so clients can find the provider (openid-configuration, scope). */
  openidConfiguration: z.string().optional(),
  scope: z.string().optional(),
}).refine((o) => !!o.jwt !== !!o.introspection, { message: 'oauth needs exactly one of jwt or introspection' });
// --- end OAuth ---

const backendLoginSchema = z.strictObject({
  /** Replay the user's own credentials, or log in as `user<separator>master` with the master password. */
  mode: z.enum(['user', 'master']).default('user'),
  masterUser: z.string().optional(),
  masterPassword: secret.optional(),
  masterPasswordFile: z.string().optional(),
  masterSeparator: z.string().default('*'),
  /** One budget for connect + greeting + STARTTLS + ID/XCLIENT + login, ride-through retries included (above health.rideThroughMs). */
  backendLoginBudgetMs: ms(15_000),
  connectTimeoutMs: ms(3000),
  /** A backend that accepted the connection but has not greeted within this is hung: the login fails (no ride-through). */
  greetingTimeoutMs: z.number().int().min(50).default(2000),
  /** After the greeting, a backend silent this long while the proxy waits for a reply is failed (no ride-through); above the backend's auth-failure delay (Dovecot: 2 s). */
  replyTimeoutMs: z.number().int().min(50).default(5000),
});

const healthSchema = z.strictObject({
  enabled: z.boolean().default(true),
  intervalMs: z.number().int().min(100).default(1000),
  /** Probe interval while an endpoint is suspect or down, so a hang is confirmed and a recovery seen quickly. */
  fastIntervalMs: z.number().int().min(50).default(250),
  jitterRatio: z.number().min(0).max(1).default(0.2),
  timeoutMs: z.number().int().min(50).default(800),
  rise: z.number().int().min(1).default(2),
  fall: z.number().int().min(1).default(2),
  /** While down, let one real login through every this many ms to keep testing the backend. */
  trickleIntervalMs: ms(10_000),
  /** Spread goodbyes to sessions of a backend that went down over this window. */
  kickWindowMs: ms(5000),
  /** Ride-through (hold time): while a backend has been refusing for less than this, logins retry within their budget instead of failing; 0 = off. */
  rideThroughMs: ms(12_000),
  /** Two identities answering in turn on one endpoint (failed fencing): alert, or refuse logins until one is stable. */
  splitBrain: z.strictObject({
    policy: z.enum(['alert', 'refuse']).default('alert'),
    windowMs: z.number().int().min(100).default(10_000),
    stableMs: ms(30_000),
  }).prefault({}),
  deepProbe: z.strictObject({ user: z.string(), password: secret.optional(), passwordFile: z.string().optional() }).optional(),
  hooks: z.strictObject({
    command: z.string().optional(),
    webhookUrl: z.string().optional(),
    timeoutMs: ms(5000),
  }).prefault({}),
});

const adminSchema = z.strictObject({
  enabled: z.boolean().default(true),
  address: z.string().default('127.0.0.1'),
  port: port.default(8025),
  token: secret.optional(),
  tokenFile: z.string().optional(),
  agentCheckPort: port.optional(),
  /** Serve only /metrics and /healthz on their own address and port, without the token (a scrape needs no admin rights). */
  metrics: z.strictObject({ address: z.string().default('127.0.0.1'), port }).optional(),
});

export const configSchema = z.strictObject({
  instanceName: z.string().default('mailproxy'),
  workers: z.union([z.literal('auto'), z.number().int().min(1)], { error: 'must be "auto" or a whole number of workers, 1 or more' }).default(1),
  /** Cluster mode: a worker that does not answer the primary's heartbeat for this long (event loop stuck) is killed and replaced; 0 = never. */
  workerHangTimeoutMs: ms(10_000),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') }).prefault({}),
  tls: tlsSchema.optional(),
  listeners: z.array(listenerSchema).min(1),
  imap: protocolSettings.prefault({}),
  pop3: protocolSettings.prefault({}),
  /** ManageSieve (RFC 5804): same limits as IMAP; sieveExtensions is the SIEVE capability announced before login. */
  sieve: protocolSettings.extend({ sieveExtensions: z.string().optional() }).prefault({}),
  smtp: smtpSettings.prefault({}),
  directory: directorySchema,
  backendLogin: backendLoginSchema.prefault({}),
  /** OAuth 2.0 bearer-token logins (OAUTHBEARER, XOAUTH2); absent = not offered. */
  oauth: oauthSchema.optional(),
  routing: z.strictObject({
    /** Backend for accounts without a host attribute; unset = temporary failure. */
    defaultBackend: z.string().optional(),
  }).prefault({}),
  backends: z.record(z.string(), backendSchema).default({}),
  /** Pools of equal backends on shared storage; a host attribute value (or routing.defaultBackend) may name one. */
  pools: z.record(z.string(), poolSchema).default({}),
  health: healthSchema.prefault({}),
  admin: adminSchema.prefault({}),
  shutdown: z.strictObject({ drainDeadlineMs: ms(30_000) }).prefault({}),
  /** A login must never come back into the tier: own listeners as backends are refused, hops are counted. */
  loopProtection: z.strictObject({
    /** Hops a login may take through proxies (Dovecot x-proxy-ttl in IMAP ID, TTL= in XCLIENT); at 1 or less it is refused. */
    proxyTtl: z.number().int().min(1).max(100).default(5),
    /** Client addresses (upstream proxies) whose x-proxy-ttl (IMAP ID) or XCLIENT (SMTP/LMTP, ManageSieve: TTL, ADDR) is believed; others cannot send them. */
    trustedNetworks: cidrList,
    /** More addresses that lead into this tier (a load balancer VIP in front of it), like Dovecot's auth_proxy_self: a backend there is a loop, whatever the port. */
    selfAddresses: z.array(z.string().refine((v) => isIP(v) !== 0, 'must be an IP address')).default([]),
  }).prefault({}),
  /** Shared state on Redis so instances act as one tier; absent = every instance on its own. */
  tier: tierSchema.optional(),
}).superRefine((c, ctx) => {
  c.listeners.forEach((l, i) => {
    if (l.tls !== 'none' && !c.tls) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'tls'], message: 'a TLS listener needs the top-level tls section (certFile, keyFile)' });
    const first = c.listeners.findIndex((o) => o.port !== 0 && o.port === l.port && o.address === l.address);
    if (first !== -1 && first < i) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'port'], message: `${l.address}:${l.port} is already listeners[${first}]` });
  });
  for (const [name, b] of Object.entries(c.backends)) {
    if (b.standby && !c.backends[b.standby]) ctx.addIssue({ code: 'custom', path: ['backends', name, 'standby'], message: `standby '${b.standby}' is not a configured backend` });
    if (b.standby === name) ctx.addIssue({ code: 'custom', path: ['backends', name, 'standby'], message: 'a backend cannot be its own standby' });
  }
  for (const [name, b] of Object.entries(c.backends)) {
    for (const proto of ['imap', 'pop3', 'submission', 'lmtp', 'smtp'] as const) {
      const ep = b[proto];
      const i = ep ? c.listeners.findIndex((l) => l.port !== 0 && l.port === ep.port && (l.address === b.host || (['0.0.0.0', '::'].includes(l.address) && /^(127\.|::1$|localhost$)/.test(b.host)))) : -1;
      if (i !== -1) ctx.addIssue({ code: 'custom', path: ['backends', name, proto, 'port'], message: `${b.host}:${ep!.port} is this proxy's own listeners[${i}]: logins would loop back into the proxy` });
    }
  }
  checkPools(c, ctx);
  for (const { path, holder, pair } of secretFileHolders(c)) {
    if (holder[pair.value] !== undefined && holder[pair.file] !== undefined) ctx.addIssue({ code: 'custom', path: [...path, pair.file], message: `give ${pair.value} or ${pair.file}, not both` });
  }
  if (c.routing.defaultBackend && !c.backends[c.routing.defaultBackend] && !c.pools[c.routing.defaultBackend]) ctx.addIssue({ code: 'custom', path: ['routing', 'defaultBackend'], message: `'${c.routing.defaultBackend}' is not a configured backend or pool` });
  if (c.oauth?.backendLogin === 'master' && (!c.backendLogin.masterUser || !(c.backendLogin.masterPassword || c.backendLogin.masterPasswordFile))) ctx.addIssue({ code: 'custom', path: ['oauth', 'backendLogin'], message: 'oauth.backendLogin master needs backendLogin.masterUser and masterPassword or masterPasswordFile' });
  if (c.backendLogin.mode === 'master' && (!c.backendLogin.masterUser || !(c.backendLogin.masterPassword || c.backendLogin.masterPasswordFile))) ctx.addIssue({ code: 'custom', path: ['backendLogin'], message: 'mode master needs masterUser and masterPassword or masterPasswordFile' });
});

/** Pool rules: members are configured backends (once each, no standby), pool names are host names distinct from backends. */
function checkPools(c: { backends: Record<string, { standby?: string | undefined }>; pools: Record<string, z.output<typeof poolSchema>> }, ctx: z.RefinementCtx): void {
  for (const [name, pool] of Object.entries(c.pools)) {
    if (!/^[A-Za-z0-9._:-]+$/.test(name)) ctx.addIssue({ code: 'custom', path: ['pools', name], message: 'a pool name must be a valid host attribute value (letters, digits, . _ : -)' });
    if (c.backends[name]) ctx.addIssue({ code: 'custom', path: ['pools', name], message: `'${name}' is both a backend and a pool; a host attribute value must name one thing` });
    const seen = new Set<string>();
    pool.members.forEach((m, i) => {
      const backend = typeof m === 'string' ? m : m.backend;
      const b = c.backends[backend];
      if (!b) ctx.addIssue({ code: 'custom', path: ['pools', name, 'members', i], message: `'${backend}' is not a configured backend (pool members must be listed under backends)` });
      else if (b.standby) ctx.addIssue({ code: 'custom', path: ['pools', name, 'members', i], message: `'${backend}' has a standby; pool members fail over within the pool, remove the standby` });
      if (seen.has(backend)) ctx.addIssue({ code: 'custom', path: ['pools', name, 'members', i], message: `'${backend}' is listed twice in this pool` });
      seen.add(backend);
    });
  }
}

export type Config = z.output<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type BackendConfig = Config['backends'][string];
export type EndpointConfig = z.output<typeof endpointSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;
export type LdapConfig = z.output<typeof ldapSchema>;
export type CacheConfig = z.output<typeof cacheSchema>;
export type HealthConfig = z.output<typeof healthSchema>;
export type PoolConfig = z.output<typeof poolSchema>;
export type OAuthConfig = z.output<typeof oauthSchema>;
export type TlsMode = (typeof TLS_MODES)[number];
