// Owns one real HAProxy (Debian package haproxy) in TCP mode for tests: config rendering, start/stop, stats-socket queries.
// Must not know about mailproxy or Dovecot beyond the ports and check settings it is given.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { findProgram } from './binaries.js';
import { allocatePorts, pollUntil, waitListening } from './ports.js';
import { spawnFixture, stopFixture, type Spawned } from './processes.js';

export interface HaproxyServer {
  name: string;
  port: number;
  /** Port of the server's agent-check responder (`agent-check agent-port`). */
  agentPort?: number;
}

export interface HaproxyOptions {
  /** Folder for the config, stats socket and output (created). */
  dir: string;
  servers: HaproxyServer[];
  /** Health check and agent interval (`inter`, `agent-inter`), ms. */
  checkIntervalMs?: number;
  /** `option tcp-check` expecting this regex as the first line (e.g. IMAP `^\* OK`); unset = connect-only check. */
  expectGreeting?: string;
  /** Sent after the expected greeting, to end the check politely (e.g. `a LOGOUT\r\n`). */
  checkSend?: string;
}

/** One row of `show stat` for a server. */
export interface ServerStat {
  name: string;
  /** UP, DOWN, DRAIN, MAINT, `UP 1/2` … as HAProxy prints it. */
  status: string;
  weight: number;
  /** Sessions served so far (stot). */
  total: number;
  /** Last agent-check status and its description (e.g. L7OK / "drain"). */
  agentStatus: string;
  checkStatus: string;
}

/** HAProxy's stats report the last check's status prefixed with "* " while the next check runs: the status is the same. */
const lastStatus = (field: string | undefined): string => (field ?? '').replace(/^\* /, '');

export interface HaproxyInstance {
  /** Frontend port clients connect to. */
  port: number;
  configPath: string;
  stats(): Promise<ServerStat[]>;
  server(name: string): Promise<ServerStat>;
  /** Poll `show stat` until `pred` holds for server `name`; returns the row and how long it took. */
  waitServer(name: string, pred: (s: ServerStat) => boolean, timeoutMs?: number): Promise<{ stat: ServerStat; ms: number }>;
  /** HAProxy's own log lines (tcplog format, one per connection). */
  output(): string;
  stop(): Promise<void>;
}

/** HAProxy's path; throws an Error naming the Debian package when it is missing (never a silent skip). */
export function requireHaproxy(pathEnv: string | undefined = process.env['PATH']): string {
  const path = findProgram('haproxy', pathEnv);
  if (path === undefined) {
    throw new Error('HAProxy tests cannot start; missing: haproxy (Debian package haproxy). Install with: apt-get install -y haproxy (or run scripts/ensure-packages.sh as root)');
  }
  return path;
}

function renderConfig(o: HaproxyOptions, port: number, statsPath: string): string {
  const inter = o.checkIntervalMs ?? 200;
  const check = o.expectGreeting !== undefined
    ? ['  option tcp-check', `  tcp-check expect rstring ${o.expectGreeting.replace(/ /g, '\\ ')}`, ...(o.checkSend ? [`  tcp-check send ${o.checkSend.replace(/ /g, '\\ ')}`] : [])]
    : [];
  const servers = o.servers.map((s) => {
    const agent = s.agentPort !== undefined ? ` agent-check agent-addr 127.0.0.1 agent-port ${s.agentPort} agent-inter ${inter}ms` : '';
    return `  server ${s.name} 127.0.0.1:${s.port} check${agent}`;
  });
  return [
    '# Rendered by test/integration/harness/haproxy.ts.',
    'global',
    '  log stdout format raw local0 info',
    `  stats socket ${statsPath} mode 600 level admin`,
    '',
    'defaults',
    '  mode tcp',
    '  log global',
    '  option tcplog',
    '  timeout connect 1s',
    '  timeout client 60s',
    '  timeout server 60s',
    // A refused connect is retried, and (redispatch 1) each retry may pick another server: a stopped
    // instance costs no login in the interval before its health check fails.
    '  retries 2',
    '  option redispatch 1',
    '',
    'frontend mail',
    `  bind 127.0.0.1:${port}`,
    '  default_backend mailproxies',
    '',
    'backend mailproxies',
    '  balance roundrobin',
    // send-proxy-v2 on client connections; health checks send PROXY v2 LOCAL (check-send-proxy).
    `  default-server send-proxy-v2 check-send-proxy inter ${inter}ms fall 1 rise 1`,
    ...check,
    ...servers,
    '',
  ].join('\n');
}

function statsCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: socketPath });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.once('error', reject);
    s.once('end', () => resolve(out));
    s.once('connect', () => s.write(`${command}\n`));
  });
}

export async function startHaproxy(o: HaproxyOptions): Promise<HaproxyInstance> {
  const haproxy = requireHaproxy();
  await mkdir(o.dir, { recursive: true });
  const [port] = await allocatePorts(1);
  const configPath = join(o.dir, 'haproxy.cfg');
  const statsPath = join(o.dir, 'haproxy.sock');
  const outputPath = join(o.dir, 'haproxy.out');
  await writeFile(configPath, renderConfig(o, port!, statsPath));
  // -db: stay in the foreground as our child, so it dies with the test run.
  const proc: Spawned = spawnFixture(haproxy, ['-db', '-f', configPath], o.dir, outputPath);
  let exited = false;
  void proc.exited.then(() => (exited = true));
  try {
    await waitListening([port!], 5000, 'haproxy', () => (exited ? `(exited: ${proc.output()})` : ''));
    await pollUntil(() => existsSync(statsPath), 5000, () => `haproxy stats socket ${statsPath}`);
  } catch (err) {
    await stopFixture(proc);
    throw new Error(`${(err as Error).message}\n--- haproxy output ---\n${proc.output()}`);
  }

  const stats = async (): Promise<ServerStat[]> => {
    const csv = await statsCommand(statsPath, 'show stat');
    const [header, ...rows] = csv.trim().split('\n');
    const cols = header!.replace(/^# /, '').split(',');
    const at = (name: string) => cols.indexOf(name);
    return rows
      .map((r) => r.split(','))
      .filter((f) => f[at('pxname')] === 'mailproxies' && f[at('svname')] !== 'BACKEND')
      .map((f) => ({
        name: f[at('svname')]!,
        status: f[at('status')]!,
        weight: Number(f[at('weight')]),
        total: Number(f[at('stot')]),
        agentStatus: `${lastStatus(f[at('agent_status')])} ${f[at('agent_desc')]}`.trim(),
        checkStatus: `${lastStatus(f[at('check_status')])} ${f[at('check_desc')]}`.trim(),
      }));
  };
  const server = async (name: string): Promise<ServerStat> => {
    const s = (await stats()).find((x) => x.name === name);
    if (!s) throw new Error(`haproxy has no server ${name}`);
    return s;
  };
  return {
    port: port!,
    configPath,
    stats,
    server,
    async waitServer(name, pred, timeoutMs = 5000) {
      const t0 = Date.now();
      let last: ServerStat | undefined;
      await pollUntil(async () => pred((last = await server(name))), timeoutMs, () => `haproxy server ${name}: ${JSON.stringify(last)}`);
      return { stat: last!, ms: Date.now() - t0 };
    },
    output: () => proc.output(),
    stop: () => stopFixture(proc, { graceful: true, graceMs: 2000 }),
  };
}
