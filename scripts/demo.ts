// Owns `npm run demo`: brings up real slapd + two Dovecot backends, starts mailproxy in front of them, prints client commands.
// Must not hide failures: a missing Debian package is installed (as root) or named with its apt-get line.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startWorld } from '../test/integration/harness/world.js';
import { worldRawConfig } from '../test/integration/proxy-fixture.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PORTS = { imap: 10143, imaps: 10993, pop3: 10110, pop3s: 10995, submission: 10587, submissions: 10465, smtp: 10025, admin: 18025 };

function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); resolve(); });
      s.once('error', () => { s.destroy(); if (Date.now() > deadline) reject(new Error(`port ${port} did not open`)); else setTimeout(attempt, 100); });
    };
    attempt();
  });
}

async function main(): Promise<void> {
  const check = spawnSync('bash', [join(root, 'scripts/ensure-packages.sh')], { stdio: 'inherit' });
  if (check.status !== 0) process.exit(check.status ?? 1);

  console.log('demo: starting slapd and two Dovecot backends …');
  const world = await startWorld();
  const raw = worldRawConfig(world, (c) => {
    c['instanceName'] = 'demo';
    c['log'] = { level: 'info' };
    c['listeners'] = [
      { protocol: 'imap', address: '127.0.0.1', port: PORTS.imap, tls: 'starttls' },
      { protocol: 'imap', address: '127.0.0.1', port: PORTS.imaps, tls: 'implicit' },
      { protocol: 'pop3', address: '127.0.0.1', port: PORTS.pop3, tls: 'starttls' },
      { protocol: 'pop3', address: '127.0.0.1', port: PORTS.pop3s, tls: 'implicit' },
      { protocol: 'submission', address: '127.0.0.1', port: PORTS.submission, tls: 'starttls' },
      { protocol: 'submission', address: '127.0.0.1', port: PORTS.submissions, tls: 'implicit' },
      { protocol: 'smtp', address: '127.0.0.1', port: PORTS.smtp, tls: 'starttls' },
    ];
    // Plaintext login on loopback keeps the demo commands short; production keeps the default (true).
    c['imap'] = { requireTlsForAuth: false };
    c['pop3'] = { requireTlsForAuth: false };
    c['smtp'] = { requireTlsForAuth: false, hostname: 'mx.demo.test' };
    c['health'] = { enabled: true, intervalMs: 2000, timeoutMs: 1000 };
    c['admin'] = { enabled: true, address: '127.0.0.1', port: PORTS.admin };
  });
  const file = join(world.dir, 'mailproxy-demo.yaml');
  writeFileSync(file, stringify(raw));
  const logFile = join(world.dir, 'mailproxy.log');
  const { openSync } = await import('node:fs');
  const out = openSync(logFile, 'a');
  const proxy = spawn(process.execPath, [join(root, 'dist/src/main.js'), 'start', '-c', file], { stdio: ['ignore', out, out] });
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\ndemo: stopping …');
    proxy.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    proxy.kill('SIGKILL');
    await world.stop();
    process.exit(code);
  };
  proxy.once('exit', (code) => { if (!stopping) { console.error(`demo: mailproxy exited (${code}); see ${logFile}`); void stop(1); } });
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  await waitForPort(PORTS.imap, 10_000);

  const u = world.users;
  console.log(`
mailproxy demo is running (logs: ${logFile}, config: ${file}).
Users: alice/${u.alice.password} (backend-a), bob/${u.bob.password} (backend-b), carol (no mailHost), dave (dead backend).

IMAP (STARTTLS port, plaintext allowed on loopback for the demo):
  curl -v --url 'imap://127.0.0.1:${PORTS.imap}/INBOX;UID=1' --user alice:${u.alice.password}
  curl -v --ssl-reqd -k --url 'imap://127.0.0.1:${PORTS.imap}/INBOX' --user bob:${u.bob.password}
IMAPS (implicit TLS):
  curl -v -k --url 'imaps://127.0.0.1:${PORTS.imaps}/INBOX;UID=1' --user bob:${u.bob.password}
  python3 -c "import imaplib,ssl; m=imaplib.IMAP4_SSL('127.0.0.1',${PORTS.imaps},ssl_context=ssl._create_unverified_context()); print(m.login('alice','${u.alice.password}')); print(m.select('INBOX'))"
POP3 / POP3S:
  curl -v --url 'pop3://127.0.0.1:${PORTS.pop3}/1' --user alice:${u.alice.password}
  curl -v -k --url 'pop3s://127.0.0.1:${PORTS.pop3s}/' --user bob:${u.bob.password}
SMTP submission (587-style with STARTTLS, and 465-style implicit TLS):
  swaks --server 127.0.0.1:${PORTS.submission} --tls --auth PLAIN --auth-user alice --auth-password ${u.alice.password} --from alice@example.test --to friend@example.org
  swaks --server 127.0.0.1:${PORTS.submissions} --tlsc --auth LOGIN --auth-user bob --auth-password ${u.bob.password} --from bob@example.test --to friend@example.org
Inbound SMTP (MX role; lands in the owner's mailbox on its backend):
  swaks --server 127.0.0.1:${PORTS.smtp} --from someone@example.org --to bob@example.test
Failures to try:
  curl -v --url 'imap://127.0.0.1:${PORTS.imap}/INBOX' --user alice:wrong        # NO [AUTHENTICATIONFAILED]
  curl -v --url 'imap://127.0.0.1:${PORTS.imap}/INBOX' --user dave:${u.dave.password}     # NO [UNAVAILABLE] (backend down)
Operations:
  curl -s http://127.0.0.1:${PORTS.admin}/backends ; curl -s http://127.0.0.1:${PORTS.admin}/metrics | grep mailproxy_logins
  kill -STOP ${world.backends.a.pid()}   # freeze backend-a's Dovecot; /backends marks it down; kill -CONT ${world.backends.a.pid()} to resume

Ctrl-C stops everything.`);
}

main().catch((e) => { console.error(`demo: ${(e as Error).message}`); process.exit(1); });
