// Owns one slapd instance for the test world: config + LDIF rendering, offline load, start/stop/pause.
// Must not know about Dovecot or the proxy; it serves only the users it is given.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderFixture } from './fixtures.js';
import { spawnFixture, stopFixture, treeControls, runCommand, type Spawned } from './processes.js';
import { isListening, pollUntil, waitRefusing } from './ports.js';
import {
  ADMIN_DN, ADMIN_PASSWORD, BASE_DN, SERVICE_DN, SERVICE_PASSWORD, sshaHash, type TestUser,
} from './users.js';

export interface LdapInstance {
  url: string;
  port: number;
  /** The same server over implicit TLS (the world's certificate, CN=localhost, IP:127.0.0.1); StartTLS works on `url`. */
  ldapsUrl: string;
  baseDN: string;
  /** The proxy's read-only service account. */
  bindDN: string;
  bindPassword: string;
  /** rootdn with write access, for tests that change entries while the world runs. */
  adminDN: string;
  adminPassword: string;
  /** slapd's stats log (stdout/stderr of `slapd -d stats`). */
  logPath: string;
  /** slapd's pid while running. */
  pid(): number | undefined;
  stop(): Promise<void>;
  start(): Promise<void>;
  pause(): void;
  resume(): void;
}

export interface LdapOptions {
  dir: string;
  port: number;
  ldapsPort: number;
  certPath: string;
  keyPath: string;
  users: TestUser[];
  slapd: string;
  slapadd: string;
}

export function renderLdif(users: TestUser[]): string {
  const parts = [
    renderFixture('ldap/base.ldif.tmpl', {
      BASE_DN,
      SERVICE_DN,
      SERVICE_PASSWORD_HASH: sshaHash(SERVICE_PASSWORD),
    }),
  ];
  for (const u of users) {
    let entry = renderFixture('ldap/user.ldif.tmpl', {
      DN: u.dn,
      UID: u.uid,
      MAIL: u.mail,
      PASSWORD_HASH: sshaHash(u.password),
    });
    if (u.mailHost !== undefined) entry = entry.trimEnd() + `\nmailHost: ${u.mailHost}\n`;
    parts.push(entry.trimEnd() + '\n\n');
  }
  return parts.join('');
}

/** Write config and data, load them offline with slapadd, start slapd and wait for its port. */
export async function startLdap(opts: LdapOptions): Promise<LdapInstance> {
  const { dir, port } = opts;
  await mkdir(join(dir, 'data'), { recursive: true });
  const confPath = join(dir, 'slapd.conf');
  const ldifPath = join(dir, 'data.ldif');
  const logPath = join(dir, 'slapd.log');
  await writeFile(confPath, renderFixture('ldap/slapd.conf.tmpl', { DIR: dir, BASE_DN, ADMIN_DN, ADMIN_PASSWORD, SERVICE_DN, CERT: opts.certPath, KEY: opts.keyPath }));
  await writeFile(ldifPath, renderLdif(opts.users));
  await runCommand(opts.slapadd, ['-q', '-f', confPath, '-l', ldifPath]);

  let proc: Spawned | undefined;
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = `ldaps://127.0.0.1:${opts.ldapsPort}`;

  const start = async (): Promise<void> => {
    if (proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null) return;
    // -d keeps slapd in the foreground (so it stays our child) and sends the stats log to stderr.
    const p = spawnFixture(opts.slapd, ['-f', confPath, '-h', `${url}/ ${ldapsUrl}/`, '-d', 'stats'], dir, logPath);
    proc = p;
    let exited = false;
    void p.exited.then(() => (exited = true));
    await pollUntil(
      async () => {
        if (exited) throw new Error(`slapd exited during startup: ${p.output()}`);
        return (await isListening(port)) && isListening(opts.ldapsPort);
      },
      10000,
      () => `slapd not listening on ${port}: ${p.output()}`,
    );
  };

  const stop = async (): Promise<void> => {
    if (proc === undefined) return;
    await stopFixture(proc, { graceful: true });
    proc = undefined;
    await waitRefusing([port, opts.ldapsPort], 5000, 'slapd');
  };

  await start();
  return {
    url,
    port,
    ldapsUrl,
    baseDN: BASE_DN,
    bindDN: SERVICE_DN,
    bindPassword: SERVICE_PASSWORD,
    adminDN: ADMIN_DN,
    adminPassword: ADMIN_PASSWORD,
    logPath,
    stop,
    start,
    ...treeControls(() => proc),
  };
}
