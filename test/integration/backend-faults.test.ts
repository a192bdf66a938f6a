// Proves backend faults as IMAP clients see them through the proxy, with real Dovecot and default health settings:
// a failover gap ridden through, a real outage failing fast, a hung backend (SIGSTOP; one that greets and then goes
// silent, also kicked by the operator mid-login; one silent after a STARTTLS upgrade), two nodes answering in turn
// behind one address (split brain); and the metrics-only listener.
// Must not test the state machine's details (unit tests do).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startForwarder, type Forwarder } from './harness/alternating-forwarder.js';
import { descendantsOf } from './harness/processes.js';
import { LineClient } from './harness/line-client.js';
import { startWorld, type World } from './harness/world.js';
import { describeSummary, imapLogin, loginStream, summarize } from './login-stream.js';
import { startProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import type { RouteProtocol } from '../../src/directory/backends.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean, withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < withinMs) {
    if (check()) return Date.now() - t0;
    await sleep(20);
  }
  throw new Error(`${what}: not within ${withinMs} ms`);
}

describe('backend faults as clients see them (real Dovecot, default health settings)', function () {
  this.timeout(120_000);
  let world: World;
  const proxies: RunningProxy[] = [];
  const forwarders: Forwarder[] = [];
  const closers: Array<() => Promise<void>> = [];

  /** A proxy in front of the world with health on and its defaults (only what the test names is changed). */
  async function proxyWith(mutate: (raw: RawConfig) => void = () => undefined): Promise<RunningProxy> {
    const p = await startProxy(worldConfig(world, (raw) => {
      raw['health'] = { enabled: true };
      raw['backendLogin'] = {};
      raw['log'] = { level: 'warn' };
      mutate(raw);
    }));
    proxies.push(p);
    return p;
  }
  const state = (p: RunningProxy, backend: string, protocol: RouteProtocol = 'imap') => p.app.monitor.stateOf(backend, protocol);
  const endpoint = (p: RunningProxy, backend: string) => p.app.monitor.snapshot().find((b) => b.backend === backend)?.endpoints.find((e) => e.protocol === 'imap');
  const alice = () => ({ user: 'alice', password: world.users.alice.password });
  const bob = () => ({ user: 'bob', password: world.users.bob.password });

  before(async () => { world = await startWorld({ dovecotPerfTuning: true }); });
  after(async () => {
    world?.backends.a.resume();
    world?.backends.b.resume();
    await Promise.allSettled(proxies.map((p) => p.stop()));
    await Promise.allSettled(forwarders.map((f) => f.close()));
    await Promise.allSettled(closers.map((c) => c()));
    await world?.stop();
  });

  it('backend stopped and restarted on the same address after a 5 s gap under a steady login stream: no client error', async () => {
    const p = await proxyWith();
    await waitFor('backend-a up', () => state(p, 'backend-a') === 'up', 5000);
    let stoppedAt = 0;
    let listeningAt = 0;
    const results = await loginStream({
      port: p.port('imap', 'starttls'), users: [alice()], perSecond: 10, durationMs: 9000,
      at: [
        { afterMs: 1000, run: async () => { await world.backends.a.stop(); stoppedAt = Date.now(); } },
        { afterMs: 6000, run: async () => { await world.backends.a.start(); listeningAt = Date.now(); } },
      ],
    });
    const s = summarize(results);
    console.log(`      failover gap of ${listeningAt - stoppedAt} ms: ${describeSummary(s)}`);
    assert.equal(s.errors, 0, JSON.stringify(results.filter((r) => r.cls !== 'ok').slice(0, 3)));
    // The logins that arrived during the gap waited for the backend and got in as soon as it listened.
    const during = results.filter((r) => r.startedAt > stoppedAt && r.startedAt < listeningAt - 500);
    assert.ok(during.length >= 30, `${during.length} logins during the gap`);
    const lastAnswer = Math.max(...during.map((r) => r.startedAt + r.ms)) - listeningAt;
    console.log(`      the ${during.length} logins that arrived during the gap were all answered ${Math.round(lastAnswer)} ms after the backend listened again`);
    assert.ok(lastAnswer <= 3000, `answered as soon as the backend answers (${lastAnswer} ms after it listened)`);
  });

  it('a backend down for longer than rideThroughMs: logins fail fast (< 250 ms) with the temporary error', async () => {
    const p = await proxyWith((raw) => { (raw['health'] as Record<string, unknown>)['rideThroughMs'] = 1500; });
    await waitFor('backend-b up', () => state(p, 'backend-b') === 'up', 5000);
    await world.backends.b.stop();
    try {
      const first = await imapLogin(p.port('imap', 'starttls'), bob().user, bob().password);
      assert.equal(first.cls, 'unavailable');
      assert.ok(first.ms >= 1000 && first.ms < 1500 + 1000, `the first login rode the hold out (${Math.round(first.ms)} ms)`);
      const later = summarize(await loginStream({ port: p.port('imap', 'starttls'), users: [bob()], perSecond: 10, durationMs: 1000 }), 'unavailable');
      console.log(`      down past the hold: ${describeSummary(later)}`);
      assert.equal(later.errors, 0);
      assert.ok(later.max < 250, `${later.max} ms`);
    } finally {
      await world.backends.b.start();
    }
    await waitFor('backend-b up again', () => state(p, 'backend-b') === 'up', 5000);
  });

  it('SIGSTOP of a backend under a login stream: no login waits longer than replyTimeoutMs + 1.5 s', async () => {
    const p = await proxyWith();
    await waitFor('backend-b up', () => state(p, 'backend-b') === 'up', 5000);
    try {
      const results = await loginStream({ port: p.port('imap', 'starttls'), users: [bob()], perSecond: 10, durationMs: 5000, at: [{ afterMs: 1000, run: () => world.backends.b.pause() }] });
      const s = summarize(results);
      console.log(`      SIGSTOP under load: ${describeSummary(s)}`);
      // A stop before a login's greeting costs it greetingTimeoutMs (2 s); one landing between the greeting and the login
      // reply costs replyTimeoutMs (5 s; the next test makes that case happen every time).
      assert.ok(s.max <= 5000 + 1500, `slowest login ${s.max} ms`);
      assert.ok(results.every((r) => r.cls === 'ok' || r.cls === 'unavailable'), 'only OK or the temporary error');
      const tail = results.slice(-10);
      // The bound is 250 ms; the margin is for a loaded test machine (a hang would cost greetingTimeoutMs, 2 s).
      assert.ok(tail.every((r) => r.cls === 'unavailable' && r.ms < 600), `once detected, fail fast: ${tail.map((r) => Math.round(r.ms)).join(', ')} ms`);
    } finally {
      world.backends.b.resume();
    }
    await waitFor('backend-b up again', () => state(p, 'backend-b') === 'up', 3000);
  });

  /**
   * An IMAP "backend" that greets and then never answers (what a SIGSTOP between greeting and login reply looks like; a
   * real stop has to land inside a ~3 ms Dovecot login to hit this), as backend-b's IMAP endpoint of a proxy. Health is
   * off: probes would mark it down and logins would fail at once, and this is about the login's own bound.
   */
  async function greetsThenSilent(mutate: (raw: RawConfig) => void = () => undefined) {
    const held: Socket[] = [];
    let heard = '';
    const server: Server = createServer((c) => {
      held.push(c);
      c.on('data', (d) => { heard += d.toString('latin1'); }).on('error', () => undefined);
      c.write('* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] silent ready\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => { for (const c of held) c.destroy(); await new Promise((r) => server.close(r)); });
    const port = (server.address() as { port: number }).port;
    const p = await proxyWith((raw) => {
      (raw['backends'] as Record<string, Record<string, unknown>>)['backend-b']!['imap'] = { port, tls: 'none' };
      raw['health'] = { enabled: false };
      raw['backendLogin'] = { backendLoginBudgetMs: 15_000 }; // the default budget, stated: the bound must come from replyTimeoutMs
      mutate(raw);
    });
    return { p, held, heard: () => heard };
  }

  it('a backend that greets and then goes silent (a stop between greeting and login reply): the temporary error within replyTimeoutMs, not the 15 s budget', async () => {
    const { p, held, heard } = await greetsThenSilent();
    const r = await imapLogin(p.port('imap', 'starttls'), bob().user, bob().password);
    console.log(`      greeted, then silent: ${r.cls} after ${Math.round(r.ms)} ms (replyTimeoutMs 5000)`);
    assert.match(heard(), /LOGIN/, 'the backend got the login command (the stop landed after the greeting)');
    assert.equal(r.cls, 'unavailable', r.answer);
    assert.ok(r.ms >= 4900 && r.ms <= 5000 + 2000, `answered after ${Math.round(r.ms)} ms`);
    assert.equal(held.length, 1, 'not retried (the backend may have acted on the login)');
  });

  it('reply timeout over STARTTLS: backend-b upgraded, then silent (its auth process stopped): IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP], submission 451 within replyTimeoutMs', async () => {
    const replyTimeoutMs = 1500;
    const b = world.backends.b;
    const p = await proxyWith((raw) => {
      const backend = (raw['backends'] as Record<string, Record<string, unknown>>)['backend-b']!;
      Object.assign(backend, { imap: { port: b.ports.imap, tls: 'starttls' }, pop3: { port: b.ports.pop3, tls: 'starttls' }, submission: { port: b.ports.submission, tls: 'starttls' }, tlsVerify: true, tlsCa: readFileSync(world.tls.caPath, 'utf8') });
      raw['listeners'] = [...(raw['listeners'] as unknown[]), { protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'none' }];
      raw['smtp'] = { requireTlsForAuth: false };
      raw['health'] = { enabled: false }; // probes would mark it down; this is about the login's own bound
      raw['backendLogin'] = { replyTimeoutMs, backendLoginBudgetMs: 15_000 }; // the default budget: the bound must come from replyTimeoutMs
    });
    const { password } = world.users.bob;
    // Dovecot's long-lived login processes (this world's tuning) greet and answer STARTTLS, CAPABILITY and ID
    // themselves; the login then waits on the auth process, which is stopped: the backend is silent after the upgrade.
    const cmdline = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { return ''; } };
    const r0 = await imapLogin(p.port('imap', 'starttls'), bob().user, password);
    assert.equal(r0.cls, 'ok', `the path works while nothing is stopped: ${r0.answer}`);
    const tree = descendantsOf(b.pid()!);
    const auth = tree.filter((pid) => /\/auth( |$)/.test(cmdline(pid)));
    assert.ok(auth.length > 0, `backend-b's auth process among ${tree.map(cmdline).join(' | ')}`);
    const timed = async (run: () => Promise<string>) => { const t0 = Date.now(); const r = await run(); return { r, ms: Date.now() - t0 }; };
    const results: Record<string, { r: string; ms: number }> = {};
    const logFrom = (await b.readLog()).length;
    for (const pid of auth) process.kill(pid, 'SIGSTOP');
    try {
      const imap = await imapLogin(p.port('imap', 'starttls'), bob().user, password);
      results['imap'] = { r: imap.answer, ms: imap.ms };
      const pop3 = await LineClient.connect(p.port('pop3', 'starttls'));
      await pop3.readLine();
      pop3.send('USER bob'); await pop3.readLine();
      results['pop3'] = await timed(async () => { pop3.send(`PASS ${password}`); return pop3.readLine(15_000); });
      pop3.close();
      const smtp = await LineClient.connect(p.port('submission', 'none'));
      await smtp.readLine();
      smtp.send('EHLO client.example'); await smtp.readUntil(/^250 /m);
      smtp.send(`AUTH PLAIN ${Buffer.from(`\0bob\0${password}`).toString('base64')}`);
      assert.match(await smtp.readLine(10_000), /^235 /);
      results['submission'] = await timed(async () => { smtp.send(`MAIL FROM:<${world.users.bob.mail}>`); return smtp.readLine(15_000); });
      smtp.close();
    } finally {
      for (const pid of auth) { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } }
    }
    console.log(`      silent after STARTTLS: ${Object.entries(results).map(([k, v]) => `${k} ${Math.round(v.ms)} ms`).join(', ')} (replyTimeoutMs ${replyTimeoutMs})`);
    assert.match(results['imap']!.r, /NO \[UNAVAILABLE\]/);
    assert.match(results['pop3']!.r, /^-ERR \[SYS\/TEMP\]/);
    assert.match(results['submission']!.r, /^451 4\.3\.0 /);
    for (const [k, v] of Object.entries(results)) assert.ok(v.ms >= replyTimeoutMs - 100 && v.ms <= replyTimeoutMs + 3000, `${k}: ${Math.round(v.ms)} ms`);
    // Those connections had been upgraded before the silence: Dovecot logs each one's end as TLS, with the user it waited on.
    const upgraded = (log: string) => ['imap-login', 'pop3-login', 'submission-login'].filter((svc) => new RegExp(`${svc}: .*user=<bob>.*\\bTLS\\b`).test(log.slice(logFrom)));
    let log = '';
    for (let i = 0; i < 50 && upgraded(log).length < 3; i++) { await sleep(100); log = await b.readLog(); }
    assert.deepEqual(upgraded(log), ['imap-login', 'pop3-login', 'submission-login'], log.slice(-2500));
  });

  it('an operator kick of a session whose login is still waiting on the backend: the administrator\'s goodbye, not the inactivity one', async () => {
    const { p, heard } = await greetsThenSilent((raw) => { raw['admin'] = { enabled: true, address: '127.0.0.1', port: 0, token: 'sekrit' }; });
    const c = await LineClient.connect(p.port('imap', 'starttls'));
    try {
      await c.readLine();
      c.send(`a LOGIN ${bob().user} ${bob().password}`);
      await waitFor('the login reached the backend', () => /LOGIN/.test(heard()), 3000);
      assert.equal(p.app.instance.sessions.list({ user: bob().user })[0]?.info.phase, 'login');
      const res = await fetch(`http://127.0.0.1:${p.app.admin!.port}/sessions/kick?user=${bob().user}`, { method: 'POST', headers: { authorization: 'Bearer sekrit' } });
      assert.deepEqual(await res.json(), { kicked: 1 });
      assert.equal(await c.readLine(), '* BYE [UNAVAILABLE] Session closed by the administrator, please reconnect');
      await waitFor('client connection closed', () => c.isClosed, 3000);
    } finally {
      c.close();
    }
  });

  it('SIGSTOP of a backend: marked down within 3 s with the default health settings', async () => {
    const p = await proxyWith();
    await waitFor('backend-b up', () => state(p, 'backend-b') === 'up', 5000);
    assert.equal((await imapLogin(p.port('imap', 'starttls'), bob().user, bob().password)).cls, 'ok');
    world.backends.b.pause();
    try {
      const detectMs = await waitFor('backend-b down', () => state(p, 'backend-b') === 'down', 6000);
      console.log(`      SIGSTOP detected down after ${detectMs} ms`);
      assert.ok(detectMs <= 3000, `${detectMs} ms`);
      // A third failed probe (fastIntervalMs + timeoutMs later) confirms a hang; from then on no login waits at all.
      await sleep(1500);
      const r = await imapLogin(p.port('imap', 'starttls'), bob().user, bob().password);
      assert.equal(r.cls, 'unavailable');
      assert.ok(r.ms < 250, `once down, logins fail fast (${Math.round(r.ms)} ms)`);
    } finally {
      world.backends.b.resume();
    }
    const upMs = await waitFor('backend-b up again', () => state(p, 'backend-b') === 'up', 3000);
    console.log(`      resumed: up again after ${upMs} ms`);
    assert.ok(upMs <= 1000, `used again within 1 s (${upMs} ms)`);
  });

  it('two Dovecots answering in turn behind one address: split brain within 10 s; alert lets logins go on, refuse gives the temporary error until one identity is stable', async () => {
    // One forwarder per proxy, each sending every other connection to the other node (two proxies sharing one could
    // each keep landing on the same node).
    const fwdAlert = await startForwarder([world.backends.a.ports.imap, world.backends.b.ports.imap]);
    const fwdRefuse = await startForwarder([world.backends.a.ports.imap, world.backends.b.ports.imap]);
    forwarders.push(fwdAlert, fwdRefuse);
    const hookFile = join(mkdtempSync(join(tmpdir(), 'mp-sb-')), 'events');
    const behind = (fwd: Forwarder, policy: 'alert' | 'refuse') => (raw: RawConfig) => {
      const backends = raw['backends'] as Record<string, Record<string, Record<string, unknown>>>;
      backends['backend-a']!['imap'] = { port: fwd.port, tls: 'none' };
      raw['health'] = { enabled: true, splitBrain: { policy, stableMs: 2000 }, hooks: { command: `echo "$MAILPROXY_BACKEND $MAILPROXY_PROTOCOL $MAILPROXY_NEW_STATE" >> ${hookFile}` } };
    };
    const t0 = Date.now();
    const alert = await proxyWith(behind(fwdAlert, 'alert'));
    const refuse = await proxyWith(behind(fwdRefuse, 'refuse'));
    // Logins keep arriving at the alert proxy meanwhile, as they would: their greetings count as well as the probes'.
    const stream = loginStream({ port: alert.port('imap', 'starttls'), users: [alice()], perSecond: 4, durationMs: 2000 });
    const alertMs = await waitFor('split brain seen by the alert proxy', () => endpoint(alert, 'backend-a')?.splitBrain === true, 10_000);
    await waitFor('split brain seen by the refuse proxy', () => endpoint(refuse, 'backend-a')?.splitBrain === true, 10_000);
    const detectMs = Date.now() - t0;
    console.log(`      split brain detected ${alertMs} ms (probes and logins) / ${detectMs} ms (probes only) after the proxies started`);
    await stream;
    const refused = summarize(await loginStream({ port: refuse.port('imap', 'starttls'), users: [alice()], perSecond: 5, durationMs: 1000 }), 'unavailable');
    const alerted = summarize(await loginStream({ port: alert.port('imap', 'starttls'), users: [alice()], perSecond: 5, durationMs: 1000 }));
    console.log(`      policy alert: ${describeSummary(alerted)}`);
    console.log(`      policy refuse: ${describeSummary(refused)}`);
    assert.equal(alerted.errors, 0, 'alert: logins go on');
    assert.equal(refused.errors, 0, 'refuse: every login gets NO [UNAVAILABLE]');
    assert.ok(refused.max < 250, `refusals are fast (${refused.max} ms)`);
    await waitFor('hook ran', () => existsSync(hookFile) && /backend-a imap split_brain/.test(readFileSync(hookFile, 'utf8')), 3000);
    // Fencing done: only node A answers. After stableMs of one identity, logins are accepted again.
    fwdRefuse.mode = 0;
    const clearedMs = await waitFor('split brain over', () => endpoint(refuse, 'backend-a')?.splitBrain !== true, 6000);
    console.log(`      one identity again: split brain cleared after ${clearedMs} ms (stableMs 2000)`);
    assert.equal((await imapLogin(refuse.port('imap', 'starttls'), alice().user, alice().password)).cls, 'ok');
  });

  it('admin.metrics: /metrics and /healthz on their own port without the token; the admin API still wants it', async () => {
    const p = await proxyWith((raw) => { raw['admin'] = { enabled: true, address: '127.0.0.1', port: 0, token: 'sekrit', metrics: { address: '127.0.0.1', port: 0 } }; });
    const metricsPort = p.app.metricsListener!.port;
    const scrape = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(scrape.status, 200);
    assert.match(await scrape.text(), /mailproxy_backend_up\{/);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/sessions`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${p.app.admin!.port}/metrics`)).status, 401);
  });
});
