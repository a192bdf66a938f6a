// Owns one Dovecot test backend: config rendering, passwd-files, maildir seeding, start/stop/pause, LMTP delivery.
// Must not know about LDAP or the proxy; it serves the users it is given on the ports it is given.
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderFixture } from './fixtures.js';
import { deliverLmtp, markerMessage } from './lmtp.js';
import { spawnFixture, stopFixture, treeControls, type Spawned } from './processes.js';
import { isListening, pollUntil, waitRefusing } from './ports.js';
import { MASTER_PASSWORD, MASTER_USER, sshaHash, type TestUser } from './users.js';

/** Debian's `mail` user and group own every mailbox (TEST-WORLD.md). */
const MAIL_UID = 8;
const MAIL_GID = 8;
const SSL_DH = '/usr/share/dovecot/dh.pem';

export interface DovecotPorts {
  imap: number;
  imaps: number;
  pop3: number;
  pop3s: number;
  lmtp: number;
  submission: number;
  /** Plain IMAP expecting a PROXY v1/v2 header first (`haproxy = yes`; senders in haproxy_trusted_networks). */
  imapHaproxy: number;
  /** Submission expecting a PROXY header first (`haproxy = yes`). */
  submissionHaproxy: number;
  /** ManageSieve (Pigeonhole), only when the world asked for it. */
  sieve?: number;
}

/** OAuth 2.0 at this backend: Dovecot's oauth2 passdb asking the test identity provider (RFC 7662 introspection). */
export interface DovecotOAuth {
  /** https://client:secret@host:port/introspect */
  introspectionUrl: string;
  caFile: string;
}

export interface DovecotInstance {
  name: string;
  host: '127.0.0.1';
  ports: DovecotPorts;
  /** Dovecot's log file (login lines show rip= for forwarded client addresses). */
  logPath: string;
  /** Folder holding each user's home; the maildir is MAILROOT/<uid>/Maildir. */
  mailRoot: string;
  configPath: string;
  /** Master pid while running. */
  pid(): number | undefined;
  /** SIGKILL master and children (a crash; fast), or with graceful SIGTERM (Dovecot takes ~1 s); then wait until ports refuse. */
  stop(opts?: { graceful?: boolean }): Promise<void>;
  /** (Re)start with the same config and ports; resolves once every listener is bound. */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT of the master and all its children: accepted connections get no greeting. */
  pause(): void;
  resume(): void;
  deliver(rcpt: string, rfc822: string | Buffer): Promise<void>;
  readLog(): Promise<string>;
}

export interface DovecotOptions {
  name: string;
  dir: string;
  ports: DovecotPorts;
  sinkPort: number;
  certPath: string;
  keyPath: string;
  dovecot: string;
  users: TestUser[];
  /** Users whose INBOX gets one marker message naming this backend. */
  residents: TestUser[];
  perfTuning: boolean;
  /** Mail root shared with other instances (a pool on shared storage); default DIR/mail, owned by this instance. */
  mailRoot?: string;
  /** Settings appended to the rendered config (e.g. a log_timestamp with microseconds). */
  extraConfig?: string;
  oauth?: DovecotOAuth;
}

function renderConfig(o: DovecotOptions, mailRoot: string): string {
  const loginTuning = o.perfTuning ? renderFixture('dovecot/login-tuning.conf.tmpl', {}) : '';
  return renderFixture('dovecot/dovecot.conf.tmpl', {
    NAME: o.name,
    DIR: o.dir,
    MAIL_ROOT: mailRoot,
    CERT: o.certPath,
    KEY: o.keyPath,
    // Without ssl_dh Dovecot 2.3 still works (ECDHE) but warns; use Debian's file when present.
    SSL_DH_LINE: existsSync(SSL_DH) ? `ssl_dh = <${SSL_DH}` : '',
    SINK_PORT: o.sinkPort,
    IMAP_PORT: o.ports.imap,
    IMAPS_PORT: o.ports.imaps,
    POP3_PORT: o.ports.pop3,
    POP3S_PORT: o.ports.pop3s,
    LMTP_PORT: o.ports.lmtp,
    SUBMISSION_PORT: o.ports.submission,
    IMAP_HAPROXY_PORT: o.ports.imapHaproxy,
    SUBMISSION_HAPROXY_PORT: o.ports.submissionHaproxy,
    LOGIN_TUNING: loginTuning,
    SIEVE_BLOCK: o.ports.sieve ? renderFixture('dovecot/sieve.conf.tmpl', { SIEVE_PORT: o.ports.sieve }) : '',
    OAUTH2_BLOCK: o.oauth ? renderFixture('dovecot/oauth2.conf.tmpl', { DIR: o.dir }) : '',
    PERF_TUNING: o.perfTuning ? renderFixture('dovecot/perf-tuning.conf.tmpl', {}) : '',
  }) + (o.extraConfig ? `\n${o.extraConfig}\n` : '');
}

async function mkdirOwned(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  await chown(path, MAIL_UID, MAIL_GID);
}

let seq = 0;

/** Put `rfc822` straight into MAILDIR/new (Maildir spec: unique name, written via tmp/ then renamed is not needed before Dovecot runs). */
async function seedMaildir(mailRoot: string, uid: string, rfc822: string): Promise<void> {
  const home = join(mailRoot, uid);
  const maildir = join(home, 'Maildir');
  await mkdirOwned(home);
  await mkdirOwned(maildir);
  for (const sub of ['cur', 'new', 'tmp']) await mkdirOwned(join(maildir, sub));
  const now = Date.now();
  const body = Buffer.from(rfc822, 'utf8');
  const name = `${Math.floor(now / 1000)}.M${(now % 1000) * 1000}P${process.pid}Q${++seq}.harness,S=${body.length}`;
  const file = join(maildir, 'new', name);
  await writeFile(file, body, { mode: 0o600 });
  await chown(file, MAIL_UID, MAIL_GID);
}

async function allListening(ports: number[]): Promise<boolean> {
  for (const p of ports) if (!(await isListening(p))) return false;
  return true;
}

function passwdLine(user: string, hash: string, home: string): string {
  // passwd-file: user:password:uid:gid:(gecos):home:(shell):extra_fields
  return `${user}:${hash}:${MAIL_UID}:${MAIL_GID}::${home}::\n`;
}

/** Prepare files, seed markers, start Dovecot and wait until every listener is bound. */
export async function startDovecot(o: DovecotOptions): Promise<DovecotInstance> {
  const mailRoot = o.mailRoot ?? join(o.dir, 'mail');
  const configPath = join(o.dir, 'dovecot.conf');
  const logPath = join(o.dir, 'dovecot.log');
  const pidPath = join(o.dir, 'run', 'master.pid');
  await mkdir(o.dir, { recursive: true, mode: 0o755 });
  await mkdir(mailRoot, { recursive: true, mode: 0o755 });
  await chown(mailRoot, MAIL_UID, MAIL_GID);
  await writeFile(configPath, renderConfig(o, mailRoot));
  // Dovecot's auth process reads the passwd-files as the unprivileged `dovecot` user.
  await writeFile(join(o.dir, 'users'), o.users.map((u) => passwdLine(u.uid, sshaHash(u.password), join(mailRoot, u.uid))).join(''), { mode: 0o644 });
  if (o.oauth) await writeFile(join(o.dir, 'dovecot-oauth2.conf.ext'), renderFixture('dovecot/oauth2.conf.ext.tmpl', { INTROSPECTION_URL: o.oauth.introspectionUrl, CA_FILE: o.oauth.caFile }), { mode: 0o644 });
  await writeFile(join(o.dir, 'master-users'), `${MASTER_USER}:${sshaHash(MASTER_PASSWORD)}\n`, { mode: 0o644 });
  for (const u of o.residents) await seedMaildir(mailRoot, u.uid, markerMessage(o.name, u.mail));

  const allPorts = Object.values(o.ports).filter((p): p is number => typeof p === 'number');
  let proc: Spawned | undefined;

  const start = async (): Promise<void> => {
    if (proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null) return;
    await rm(pidPath, { force: true });
    // -F keeps the master in the foreground as our child, so it dies with the test run.
    const p = spawnFixture(o.dovecot, ['-F', '-c', configPath], o.dir, join(o.dir, 'dovecot.stderr'));
    proc = p;
    let exited = false;
    void p.exited.then(() => (exited = true));
    try {
      // master.pid is written after the listeners are bound; wait for both.
      await pollUntil(
        async () => {
          if (exited) throw new Error(`dovecot ${o.name} exited during startup`);
          return existsSync(pidPath) && (await allListening(allPorts));
        },
        10000,
        () => `dovecot ${o.name} not listening on ${allPorts.join(',')}`,
      );
    } catch (err) {
      const log = (await readFile(logPath, 'utf8').catch(() => '')).slice(-2000);
      throw new Error(`${(err as Error).message}\n--- ${logPath} ---\n${log}\n--- output ---\n${p.output()}`);
    }
  };

  const stop = async (stopOpts: { graceful?: boolean } = {}): Promise<void> => {
    if (proc === undefined) return;
    await stopFixture(proc, stopOpts);
    proc = undefined;
    await waitRefusing(allPorts, 5000, `dovecot ${o.name}`);
  };

  await start();
  return {
    name: o.name,
    host: '127.0.0.1',
    ports: o.ports,
    logPath,
    mailRoot,
    configPath,
    stop,
    start,
    ...treeControls(() => proc),
    deliver: (rcpt, rfc822) => deliverLmtp(o.ports.lmtp, rcpt, rfc822),
    readLog: () => readFile(logPath, 'utf8'),
  };
}
