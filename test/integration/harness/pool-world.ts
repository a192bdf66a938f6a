// Owns the shared-storage pool test world: N Dovecot members on ONE mail root (standing in for NFS), many users, precise logs.
// Must not know about the proxy; tests read each member's own log (dovecot-sessions.ts) to see who served whom and when.
import { rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireBinaries } from './binaries.js';
import { startDovecot, type DovecotInstance } from './dovecot-backend.js';
import { parseSessions, PRECISE_LOG_TIMESTAMP, type BackendSession } from './dovecot-sessions.js';
import { allocatePorts } from './ports.js';
import { startSmtpSink, type SmtpSink } from './smtp-sink.js';
import { markOwner, reapStaleWorlds, WORLD_PARENT, WORLD_PREFIX } from './stale-worlds.js';
import { generateCert, type TlsFiles } from './tls-cert.js';
import { BASE_DN, MAIL_DOMAIN, sshaHash, type TestUser } from './users.js';

export interface PoolMemberInstance {
  name: string;
  dovecot: DovecotInstance;
  /** Times (ms) the member was stopped, so sessions it never logged out end there. */
  stops: number[];
}

export interface PoolWorld {
  dir: string;
  /** The one mail root every member serves (each user's maildir is MAILROOT/<uid>/Maildir). */
  mailRoot: string;
  tls: TlsFiles;
  sink: SmtpSink;
  members: PoolMemberInstance[];
  users: TestUser[];
  /** A static-directory users file for mailproxy: every user with `host: <hostValue>` and an {SSHA} hash. */
  writeDirectory(hostValue: string): Promise<string>;
  /** Start one more member on the same mail root (e.g. the fourth). */
  addMember(name: string): Promise<PoolMemberInstance>;
  /** Stop a member (SIGKILL: a crash, or graceful) and record when. */
  stopMember(name: string, opts?: { graceful?: boolean }): Promise<void>;
  startMember(name: string): Promise<void>;
  /** Every member's sessions parsed from its own log. */
  sessions(): Promise<BackendSession[]>;
  stop(): Promise<void>;
}

export interface PoolWorldOptions {
  members: number;
  users: number;
}

const MAIL_UID = 8;

/** Users `pool001`…: password `pw-<uid>`, no host attribute (the directory file gives them one). */
export function poolUsers(n: number): TestUser[] {
  const width = String(n).length;
  return Array.from({ length: n }, (_, i) => {
    const uid = `pool${String(i + 1).padStart(Math.max(3, width), '0')}`;
    return { uid, mail: `${uid}@${MAIL_DOMAIN}`, password: `pw-${uid}`, dn: `uid=${uid},ou=people,${BASE_DN}` };
  });
}

export async function startPoolWorld(o: PoolWorldOptions): Promise<PoolWorld> {
  const bins = requireBinaries();
  reapStaleWorlds();
  const dir = await mkdtemp(join(WORLD_PARENT, WORLD_PREFIX));
  await chmod(dir, 0o755);
  markOwner(dir);
  const mailRoot = join(dir, 'shared-mail');
  await mkdir(mailRoot, { mode: 0o755 });
  await chown(mailRoot, MAIL_UID, MAIL_UID);
  const users = poolUsers(o.users);
  const members: PoolMemberInstance[] = [];
  let sink: SmtpSink | undefined;
  const removeDir = (): void => {
    if (process.env['MAILPROXY_KEEP_WORLD'] !== '1') rmSync(dir, { recursive: true, force: true });
  };
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled([...members.map((m) => m.dovecot.stop()), ...(sink ? [sink.close()] : [])]);
  };
  try {
    const [tls, s] = await Promise.all([generateCert(bins.get('openssl')!, dir), startSmtpSink()]);
    sink = s;
    const addMember = async (name: string): Promise<PoolMemberInstance> => {
      const p = await allocatePorts(8);
      const dovecot = await startDovecot({
        name,
        dir: join(dir, name),
        ports: { imap: p[0]!, imaps: p[1]!, pop3: p[2]!, pop3s: p[3]!, lmtp: p[4]!, submission: p[5]!, imapHaproxy: p[6]!, submissionHaproxy: p[7]! },
        sinkPort: s.port,
        certPath: tls.certPath,
        keyPath: tls.keyPath,
        dovecot: bins.get('dovecot')!,
        users,
        residents: [],
        perfTuning: true,
        mailRoot,
        extraConfig: PRECISE_LOG_TIMESTAMP,
      });
      const m = { name, dovecot, stops: [] };
      members.push(m);
      return m;
    };
    for (let i = 1; i <= o.members; i++) await addMember(`member${i}`);
    const find = (name: string): PoolMemberInstance => {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no pool member ${name}`);
      return m;
    };
    process.on('exit', removeDir);
    return {
      dir,
      mailRoot,
      tls,
      sink: s,
      members,
      users,
      async writeDirectory(hostValue) {
        const file = join(dir, 'pool-users.yaml');
        const lines = users.map((u) => `  ${u.uid}: { password: "${sshaHash(u.password)}", host: ${hostValue}, mail: ${u.mail} }`);
        await writeFile(file, `users:\n${lines.join('\n')}\n`);
        return file;
      },
      addMember,
      async stopMember(name, opts = {}) {
        const m = find(name);
        await m.dovecot.stop(opts);
        // Stamped once Dovecot is gone: its log process stamps lines as it reads them, so a login just before the stop
        // may carry a later time than the stop's start. Sessions without an end line end here (later, never earlier).
        m.stops.push(Date.now());
      },
      startMember: (name) => find(name).dovecot.start(),
      async sessions() {
        const all = await Promise.all(members.map(async (m) => parseSessions(m.name, await readFile(m.dovecot.logPath, 'utf8').catch(() => ''), m.stops)));
        return all.flat();
      },
      async stop() {
        process.removeListener('exit', removeDir);
        await stopAll();
        if (process.env['MAILPROXY_KEEP_WORLD'] !== '1') await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    removeDir();
    throw err;
  }
}
