// Proves backend health against real Dovecot: probes, down within interval × fall, standby, trickle, hooks, webhook, admin, status, recovery, SIGSTOP.
// Must not test protocol dialogues; the proxy's sessions are stood in for by registry entries.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema, type Config } from '../../src/config/schema.js';
import { routeForBackend, type RouteProtocol } from '../../src/directory/backends.js';
import { isProxyError, ProxyError } from '../../src/errors.js';
import { localAdminDeps } from '../../src/ops/admin-local.js';
import { systemClock } from '../../src/core/clock.js';
import { imapDeepProbe } from '../../src/health/deep-probe.js';
import { HealthMonitor, type EndpointTransition } from '../../src/health/health.js';
import { startAdminServer } from '../../src/ops/http.js';
import { kickSpread } from '../../src/ops/kick.js';
import { probeOnce } from '../../src/health/probe.js';
import { runStatus } from '../../src/ops/status.js';
import { SessionRegistry } from '../../src/proxy/sessions.js';
import { startWorld, type World } from './harness/world.js';

const INTERVAL_MS = 300;
const TIMEOUT_MS = 300;
const FALL = 2;
const RISE = 2;
const JITTER = 0.2;
/** Worst case for `fall` failed probes: each waits up to interval × (1 + jitter), plus one timeout for a silent server. */
const DOWN_BUDGET_MS = FALL * (INTERVAL_MS * (1 + JITTER) + TIMEOUT_MS) + 200;
const UP_BUDGET_MS = RISE * INTERVAL_MS * (1 + JITTER) + 1000;

async function waitFor(what: string, pred: () => boolean, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

function codeOf(fn: () => unknown): string | undefined {
  try { fn(); return undefined; } catch (e) { return isProxyError(e) ? e.code : String(e); }
}

describe('backend health against real Dovecot', function () {
  this.timeout(60_000);
  let world: World;
  let config: Config;
  let monitor: HealthMonitor;
  let dir: string;
  let hookFile: string;
  const webhooks: Array<Record<string, string>> = [];
  let webhookServer: http.Server;
  let admin: Awaited<ReturnType<typeof startAdminServer>>;
  const sessions = new SessionRegistry();
  const kicked: string[] = [];
  const transitions: Array<EndpointTransition & { wall: number }> = [];
  const measured: Record<string, number> = {};

  before(async function () {
    this.timeout(60_000);
    world = await startWorld();
    dir = await mkdtemp(join(tmpdir(), 'mailproxy-health-'));
    hookFile = join(dir, 'hook.log');
    webhookServer = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString('utf8'); });
      req.on('end', () => { webhooks.push(JSON.parse(body) as Record<string, string>); res.end('ok'); });
    });
    await new Promise<void>((r) => webhookServer.listen(0, '127.0.0.1', () => r()));
    const { a, b } = world.backends;
    config = configSchema.parse({
      instanceName: 'px-test',
      listeners: [{ protocol: 'imap', port: 0, tls: 'none' }],
      directory: { type: 'static', static: { file: 'unused.yaml' } },
      backends: {
        'backend-a': { host: a.host, imap: { port: a.ports.imap }, pop3: { port: a.ports.pop3 }, lmtp: { port: a.ports.lmtp }, submission: { port: a.ports.submission }, standby: 'backend-b' },
        'backend-b': { host: b.host, imap: { port: b.ports.imap }, pop3: { port: b.ports.pop3 } },
        'backend-a-tls': { host: a.host, imap: { port: a.ports.imaps, tls: 'implicit' }, pop3: { port: a.ports.pop3s, tls: 'implicit' }, tlsVerify: false },
        'backend-a-verify': { host: a.host, imap: { port: a.ports.imaps, tls: 'implicit' }, tlsVerify: true },
        'backend-dead': { host: '127.0.0.1', imap: { port: world.deadPort } },
      },
      health: {
        intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS, jitterRatio: JITTER, rise: RISE, fall: FALL, trickleIntervalMs: 60_000, kickWindowMs: 200, rideThroughMs: 0, // this file tests fail-fast; ride-through has backend-faults.test.ts
        hooks: {
          command: `printf '%s %s %s %s|%s\\n' "$MAILPROXY_BACKEND" "$MAILPROXY_OLD_STATE" "$MAILPROXY_NEW_STATE" "$MAILPROXY_INSTANCE" "$MAILPROXY_REASON" >> '${hookFile}'`,
          webhookUrl: `http://127.0.0.1:${(webhookServer.address() as AddressInfo).port}/hook`,
          timeoutMs: 2000,
        },
      },
      admin: { address: '127.0.0.1', port: 0, token: 'admin-token' },
    });
    monitor = new HealthMonitor({
      config,
      onBackendDown: (backend, protocol) => { kickSpread(sessions, { backend, protocol }, new ProxyError('BACKEND_DOWN'), config.health.kickWindowMs); },
    });
    monitor.on('transition', (t: EndpointTransition) => transitions.push({ ...t, wall: Date.now() }));
    admin = await startAdminServer({ deps: localAdminDeps({ monitor, sessions, readiness: () => ({ ready: true, reasons: [] }) }), token: 'admin-token', address: '127.0.0.1', port: 0 });
    monitor.start();
  });

  after(async function () {
    this.timeout(30_000);
    monitor?.stop();
    await admin?.close();
    await new Promise<void>((r) => (webhookServer ? webhookServer.close(() => r()) : r()));
    await world?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (Object.keys(measured).length) console.log(`      measured: ${JSON.stringify(measured)}`);
  });

  const adminCfg = () => configSchema.parse({ ...config, admin: { address: '127.0.0.1', port: admin.port, token: 'admin-token' } });
  const state = (b: string, p: RouteProtocol = 'imap') => monitor.stateOf(b, p);
  const route = (b: string, p: RouteProtocol = 'imap') => routeForBackend(config, b, p);

  it('probes every endpoint (plain and implicit TLS) up and records identities; a dead port and an unverifiable cert go down', async () => {
    const ms = await waitFor('all of backend-a/b up', () => ['imap', 'pop3', 'lmtp', 'submission'].every((p) => state('backend-a', p as RouteProtocol) === 'up') && state('backend-b') === 'up' && state('backend-a-tls') === 'up' && state('backend-a-tls', 'pop3') === 'up', 5000);
    measured.initialUpMs = ms;
    await waitFor('dead and unverifiable down', () => state('backend-dead') === 'down' && state('backend-a-verify') === 'down', DOWN_BUDGET_MS + 1000);
    const snap = monitor.snapshot();
    const a = snap.find((x) => x.backend === 'backend-a')!;
    const lmtp = a.endpoints.find((e) => e.protocol === 'lmtp')!;
    assert.match(lmtp.lastProbe!.identity!, /backend-a\.example\.test/, 'LMTP greeting names the host');
    assert.match(a.endpoints.find((e) => e.protocol === 'imap')!.lastProbe!.identity!, /Dovecot/);
    const verify = snap.find((x) => x.backend === 'backend-a-verify')!.endpoints[0]!.lastProbe!;
    assert.match(verify.error!, /SELF_SIGNED|self.signed|certificate/i);
    const dead = snap.find((x) => x.backend === 'backend-dead')!.endpoints[0]!.lastProbe!;
    assert.match(dead.error!, /ECONNREFUSED/);
    assert.equal(monitor.admit(route('backend-a')).backend, 'backend-a');
    assert.equal(codeOf(() => monitor.admit(route('backend-dead'))), 'BACKEND_DOWN');
  });

  it('stopping backend-a marks it down within interval × fall; its users fail fast or go to the up standby', async () => {
    sessions.add({ info: { id: 's1', protocol: 'imap', client: '192.0.2.9', user: 'alice', backend: 'backend-a', phase: 'relay', startedAt: Date.now() }, kick: (e) => { kicked.push(`s1:${e.code}`); sessions.remove('s1'); } });
    await world.backends.a.stop();
    const stoppedAt = Date.now();
    await waitFor('backend-a imap down', () => state('backend-a') === 'down', DOWN_BUDGET_MS);
    measured.downAfterStopMs = Date.now() - stoppedAt;
    await waitFor('all backend-a endpoints down', () => ['imap', 'pop3', 'lmtp', 'submission'].every((p) => state('backend-a', p as RouteProtocol) === 'down'), DOWN_BUDGET_MS);
    measured.allEndpointsDownAfterStopMs = Date.now() - stoppedAt;
    assert.ok(measured.downAfterStopMs! <= DOWN_BUDGET_MS, `down after ${measured.downAfterStopMs} ms (budget ${DOWN_BUDGET_MS})`);

    const t0 = process.hrtime.bigint();
    const r = monitor.admit(route('backend-a'));
    measured.admitDecisionUs = Number((process.hrtime.bigint() - t0) / 1000n);
    assert.equal(r.backend, 'backend-b', 'standby up: failover');
    assert.equal(r.port, world.backends.b.ports.imap);
    assert.equal(codeOf(() => monitor.admit(route('backend-a', 'lmtp'))), 'BACKEND_DOWN', 'no standby endpoint for lmtp');
    await waitFor('backend-a-tls (same Dovecot) down', () => state('backend-a-tls') === 'down', DOWN_BUDGET_MS);
    assert.equal(codeOf(() => monitor.admit(route('backend-a-tls'))), 'BACKEND_DOWN');

    await waitFor('the spliced session kicked', () => kicked.length === 1, 2000);
    assert.deepEqual(kicked, ['s1:BACKEND_DOWN']);
  });

  it('the state change reaches metrics, /backends, the hook command, the webhook and `status` (exit 2)', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`, { headers: { authorization: 'Bearer admin-token' } })).text();
    assert.match(metrics, /mailproxy_backend_up\{backend="backend-a",protocol="imap"\} 0/);
    assert.match(metrics, /mailproxy_backend_up\{backend="backend-b",protocol="imap"\} 1/);
    assert.match(metrics, /mailproxy_backend_state_transitions_total\{backend="backend-a",from="suspect",to="down"\} [1-9]\d*$/m); // the registry is process-wide: other test files count too
    assert.match(metrics, /mailproxy_probes_total\{backend="backend-a",protocol="imap",result="connect"\} \d+/);

    const body = (await (await fetch(`http://127.0.0.1:${admin.port}/backends`, { headers: { authorization: 'Bearer admin-token' } })).json()) as { backends: Array<{ backend: string; state: string; sessions: number }> };
    const a = body.backends.find((x) => x.backend === 'backend-a')!;
    assert.equal(a.state, 'down');

    let hookLog = '';
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      hookLog = await readFile(hookFile, 'utf8').catch(() => '');
      if (/^backend-a up down px-test\|/m.test(hookLog)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(hookLog, /^backend-a unknown up px-test\|/m);
    // Hooks hear settled changes: up -> down (the suspect step on the way is in the metrics and logs only).
    assert.match(hookLog, /^backend-a up down px-test\|\w+: probe failed: ECONNREFUSED/m);
    assert.doesNotMatch(hookLog, /^backend-a \S+ suspect /m);
    await waitFor('webhook for backend-a down', () => webhooks.some((w) => w.backend === 'backend-a' && w.to === 'down'), 3000);
    const w = webhooks.find((x) => x.backend === 'backend-a' && x.to === 'down')!;
    assert.equal(w.event, 'backend_state');
    assert.equal(w.instance, 'px-test');

    const lines: string[] = [];
    assert.equal(await runStatus(adminCfg(), { print: (l) => lines.push(l) }), 2);
    assert.match(lines[0]!, /^MAILPROXY CRITICAL .*down: .*backend-a/);
    assert.ok(lines.some((l) => /^backend-a .*imap\s+down/.test(l)), lines.join('\n'));
  });

  it('restarting backend-a brings it up within interval × rise; logins go to the primary again, never to both', async () => {
    await world.backends.a.start();
    const startedAt = Date.now();
    await waitFor('backend-a imap up', () => state('backend-a') === 'up', UP_BUDGET_MS);
    measured.upAfterStartMs = Date.now() - startedAt;
    assert.equal(monitor.admit(route('backend-a')).backend, 'backend-a');
    await waitFor('webhook for backend-a up', () => webhooks.some((x) => x.backend === 'backend-a' && x.from === 'down' && x.to === 'up'), UP_BUDGET_MS + 2000);
  });

  it('a SIGSTOPped backend (accepts TCP, never greets) is detected by the probe timeout, and recovers on SIGCONT', async () => {
    await waitFor('backend-a all up', () => ['imap', 'pop3', 'lmtp', 'submission'].every((p) => state('backend-a', p as RouteProtocol) === 'up'), UP_BUDGET_MS);
    const n = transitions.length;
    world.backends.a.pause();
    const pausedAt = Date.now();
    try {
      await waitFor('paused backend-a down', () => state('backend-a') === 'down', DOWN_BUDGET_MS);
      measured.downAfterSigstopMs = Date.now() - pausedAt;
      const lp = monitor.snapshot().find((x) => x.backend === 'backend-a')!.endpoints.find((e) => e.protocol === 'imap')!.lastProbe!;
      assert.equal(lp.failure, 'timeout');
      assert.ok(transitions.slice(n).some((t) => t.backend === 'backend-a' && t.to === 'down'));
    } finally {
      world.backends.a.resume();
    }
    const resumedAt = Date.now();
    await waitFor('resumed backend-a up', () => state('backend-a') === 'up', UP_BUDGET_MS);
    measured.upAfterSigcontMs = Date.now() - resumedAt;
  });

  it('maintenance via the admin API fails logins fast and is lifted again', async () => {
    const res = await fetch(`http://127.0.0.1:${admin.port}/backends/backend-b/maintenance?enabled=on`, { method: 'POST', headers: { authorization: 'Bearer admin-token' } });
    assert.equal(res.status, 200);
    assert.equal(codeOf(() => monitor.admit(route('backend-b'))), 'BACKEND_MAINTENANCE');
    await fetch(`http://127.0.0.1:${admin.port}/backends/backend-b/maintenance`, { method: 'POST', headers: { authorization: 'Bearer admin-token' }, body: JSON.stringify({ enabled: false }) });
    assert.equal(monitor.admit(route('backend-b')).backend, 'backend-b');
  });

  it('deep probe logs in with imapflow and selects INBOX (plain, implicit TLS); a wrong password fails the probe', async () => {
    const { alice } = world.users;
    const good = imapDeepProbe({ user: alice.uid, password: alice.password })!;
    const bad = imapDeepProbe({ user: alice.uid, password: 'wrong' })!;
    const started = Date.now();
    const r1 = await probeOnce(route('backend-b'), { timeoutMs: 5000, clock: systemClock, deepProbe: good });
    measured.deepProbeMs = Date.now() - started;
    assert.equal(r1.ok, true, r1.error);
    assert.equal(r1.deep, true);
    const r2 = await probeOnce(route('backend-a-tls'), { timeoutMs: 5000, clock: systemClock, deepProbe: good });
    assert.equal(r2.ok, true, r2.error);
    const r3 = await probeOnce(route('backend-b'), { timeoutMs: 5000, clock: systemClock, deepProbe: bad });
    assert.equal(r3.ok, false);
    assert.equal(r3.failure, 'deep');
  });
});
