// Owns composing the whole integration test world: temp folder, cert, SMTP sink, slapd, two Dovecot backends.
// Must not contain protocol or config details of one component (those live in their own harness modules).
import { rmSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { requireBinaries } from './binaries.js';
import { startDovecot, type DovecotInstance } from './dovecot-backend.js';
import { IDP_CLIENT_ID, IDP_CLIENT_SECRET, startIdentityProvider, type IdentityProvider } from './identity-provider.js';
import { startLdap, type LdapInstance } from './ldap-server.js';
import { allocatePorts } from './ports.js';
import { startSmtpSink, type SmtpSink } from './smtp-sink.js';
import { markOwner, reapStaleWorlds, WORLD_PARENT, WORLD_PREFIX } from './stale-worlds.js';
import { generateCert, type TlsFiles } from './tls-cert.js';
import { makeUsers, MASTER_PASSWORD, MASTER_SEPARATOR, MASTER_USER, type TestUser, type UserName } from './users.js';

export type { DovecotInstance, DovecotPorts } from './dovecot-backend.js';
export type { LdapInstance } from './ldap-server.js';
export type { SmtpSink, SinkMessage } from './smtp-sink.js';
export type { TestUser, UserName } from './users.js';
export type { TlsFiles } from './tls-cert.js';
export type { IdentityProvider } from './identity-provider.js';

export interface World {
  /** Temp root folder (kept after stop() when MAILPROXY_KEEP_WORLD=1, for reading logs). */
  dir: string;
  ldap: LdapInstance;
  backends: { a: DovecotInstance; b: DovecotInstance };
  /** A loopback port where nothing listens (allocated, then closed). */
  deadPort: number;
  sink: SmtpSink;
  tls: TlsFiles;
  users: Record<UserName, TestUser>;
  /** Dovecot master user for the proxy's master-user login mode: login as `uid${separator}${name}`. */
  masterUser: { name: string; password: string; separator: string };
  /** The OAuth identity provider (JWKS + introspection), when the world was started with `oauth`. */
  idp?: IdentityProvider;
  /** Milliseconds startWorld took. */
  startupMs: number;
  stop(): Promise<void>;
}

export interface WorldOptions {
  /** Long-lived Dovecot processes with high client limits, for load tests (TEST-WORLD.md). */
  dovecotPerfTuning?: boolean;
  /** ManageSieve (Pigeonhole) on each backend: DovecotPorts.sieve. */
  sieve?: boolean;
  /** A test identity provider (JWKS + RFC 7662 introspection over HTTPS) and Dovecot's oauth2 passdb asking it. */
  oauth?: boolean;
}

type Stoppable = { stop(): Promise<void> } | { close(): Promise<void> };

async function stopAll(parts: Stoppable[]): Promise<void> {
  const results = await Promise.allSettled(parts.map((p) => ('stop' in p ? p.stop() : p.close())));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) throw new Error(`world teardown: ${failed.map((f) => String(f.reason)).join('; ')}`);
}

/**
 * Start the world; a failed start (a fixture that did not come up in time on a loaded machine, a port taken between
 * allocation and bind) is torn down and retried once on fresh ports, with the first error written to stderr.
 */
export async function startWorld(opts: WorldOptions = {}): Promise<World> {
  try {
    return await startWorldOnce(opts);
  } catch (err) {
    process.stderr.write(`startWorld: first attempt failed, retrying once on fresh ports: ${String((err as Error).stack ?? err)}\n`);
    return startWorldOnce(opts);
  }
}

async function startWorldOnce(opts: WorldOptions): Promise<World> {
  const t0 = Date.now();
  const bins = requireBinaries();
  reapStaleWorlds();
  const dir = await mkdtemp(join(WORLD_PARENT, WORLD_PREFIX));
  // Dovecot drops to the mail and dovenull users, which must traverse this folder.
  await chmod(dir, 0o755);
  markOwner(dir);

  const started: Stoppable[] = [];
  const removeDir = async (): Promise<void> => {
    if (process.env['MAILPROXY_KEEP_WORLD'] !== '1') await rm(dir, { recursive: true, force: true });
  };
  try {
    const [ldapPort, ldapsPort, deadPort, ...p] = await allocatePorts(19);
    const sievePorts = opts.sieve ? await allocatePorts(2) : [];
    const portsFor = (i: number) => ({
      imap: p[i]!, imaps: p[i + 1]!, pop3: p[i + 2]!, pop3s: p[i + 3]!, lmtp: p[i + 4]!, submission: p[i + 5]!, imapHaproxy: p[i + 6]!, submissionHaproxy: p[i + 7]!,
      ...(opts.sieve ? { sieve: sievePorts[i / 8]! } : {}),
    });
    const [tls, sink] = await Promise.all([generateCert(bins.get('openssl')!, dir), startSmtpSink()]);
    started.push(sink);
    let idp: IdentityProvider | undefined;
    if (opts.oauth) {
      idp = await startIdentityProvider({ dir, certPath: tls.certPath, keyPath: tls.keyPath });
      started.push(idp);
    }
    // Dovecot checks the certificate against the URL's host name: the world certificate names localhost.
    const oauth = idp ? { introspectionUrl: `https://${IDP_CLIENT_ID}:${IDP_CLIENT_SECRET}@localhost:${new URL(idp.url).port}/introspect`, caFile: tls.caPath } : undefined;
    const users = makeUsers();
    const all = Object.values(users);
    const backend = (name: string, ports: ReturnType<typeof portsFor>) =>
      startDovecot({
        name,
        dir: join(dir, name),
        ports,
        sinkPort: sink.port,
        certPath: tls.certPath,
        keyPath: tls.keyPath,
        dovecot: bins.get('dovecot')!,
        users: all,
        residents: all.filter((u) => u.mailHost === name),
        perfTuning: opts.dovecotPerfTuning === true,
        ...(oauth ? { oauth } : {}),
      });
    const settled = await Promise.allSettled([
      startLdap({ dir: join(dir, 'ldap'), port: ldapPort!, ldapsPort: ldapsPort!, certPath: tls.certPath, keyPath: tls.keyPath, users: all, slapd: bins.get('slapd')!, slapadd: bins.get('slapadd')! }),
      backend('backend-a', portsFor(0)),
      backend('backend-b', portsFor(8)),
    ] as const);
    for (const s of settled) if (s.status === 'fulfilled') started.push(s.value);
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    const [ldap, a, b] = settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [LdapInstance, DovecotInstance, DovecotInstance];

    let stopped = false;
    // If the test process exits without stop(), processes.ts kills the fixtures; this removes the folder.
    const removeDirOnExit = (): void => {
      if (process.env['MAILPROXY_KEEP_WORLD'] !== '1') rmSync(dir, { recursive: true, force: true });
    };
    process.on('exit', removeDirOnExit);
    return {
      dir,
      ldap,
      backends: { a, b },
      deadPort: deadPort!,
      sink,
      tls,
      users,
      masterUser: { name: MASTER_USER, password: MASTER_PASSWORD, separator: MASTER_SEPARATOR },
      ...(idp ? { idp } : {}),
      startupMs: Date.now() - t0,
      async stop() {
        if (stopped) return;
        stopped = true;
        process.removeListener('exit', removeDirOnExit);
        try {
          await stopAll(started);
        } finally {
          await removeDir();
        }
      },
    };
  } catch (err) {
    await stopAll(started).catch(() => undefined);
    await removeDir();
    throw err;
  }
}
