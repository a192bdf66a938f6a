// Proves backend failure handling through the proxy with real clients: detection, fast temporary errors, standby, goodbyes, recovery.
// Must not test the health state machine's details (unit tests) or the prober alone (health-backend-down tests).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy, withWorldAndProxy, worldConfig, type RawConfig, type RunningProxy } from './proxy-fixture.js';
import { firstMessageHeader, greet } from './imap-helpers.js';
import { runStatus } from '../../src/ops/status.js';

// No ride-through here: these tests are about detection and failing fast (backend-faults.test.ts covers ride-through).
const FAST_HEALTH = { enabled: true, intervalMs: 250, timeoutMs: 300, rise: 2, fall: 2, jitterRatio: 0.1, trickleIntervalMs: 60_000, kickWindowMs: 200, rideThroughMs: 0 };

async function adminGet(p: RunningProxy, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${p.app.admin!.port}${path}`);
  return { status: res.status, text: await res.text() };
}

/** The IMAP endpoint's state (the folded backend state turns down as soon as any protocol is down). */
async function stateOf(p: RunningProxy, backend: string): Promise<string> {
  const { text } = await adminGet(p, '/backends');
  const data = JSON.parse(text) as { backends: Array<{ backend: string; endpoints: Array<{ protocol: string; state: string }> }> };
  return data.backends.find((b) => b.backend === backend)?.endpoints.find((e) => e.protocol === 'imap')?.state ?? 'missing';
}

async function waitState(p: RunningProxy, backend: string, want: string, ms: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if ((await stateOf(p, backend)) === want) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${backend} not ${want} within ${ms} ms (is ${await stateOf(p, backend)})`);
}

describe('backend failure through the proxy (real Dovecot, real clients)', function () {
  this.timeout(60_000);
  let plain: RunningProxy;     // no standby: fail fast
  let paired: RunningProxy;    // backend-a has standby backend-b
  let hookFile: string;
  const common = (raw: RawConfig) => {
    raw['health'] = { ...FAST_HEALTH, hooks: { command: `echo "$MAILPROXY_BACKEND $MAILPROXY_OLD_STATE $MAILPROXY_NEW_STATE" >> ${hookFile}` } };
    raw['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
  };

  // Registered first, so it runs before the world and the proxies start.
  before(() => { hookFile = join(mkdtempSync(join(tmpdir(), 'mp-hook-')), 'events'); });
  const env = withWorldAndProxy(common, {
    onReady: async (world, proxy) => {
      plain = proxy;
      paired = await startProxy(worldConfig(world, (raw) => {
        common(raw);
        (raw['health'] as Record<string, unknown>)['hooks'] = {};
        ((raw['backends'] as Record<string, Record<string, unknown>>)['backend-a']!)['standby'] = 'backend-b';
      }));
      await waitState(plain, 'backend-a', 'up', 15_000); // setup, not a tested bound: a loaded machine may time a first probe out
      await waitState(paired, 'backend-b', 'up', 15_000);
    },
    onStop: async () => { await paired?.stop(); },
  });

  it('stopping backend-a: marked down within interval × fall (+ timeout), users get [UNAVAILABLE] in well under a second', async () => {
    await env.world.backends.a.stop();
    const detectMs = await waitState(plain, 'backend-a', 'down', 3000);
    assert.ok(detectMs <= FAST_HEALTH.intervalMs * 1.1 * FAST_HEALTH.fall + FAST_HEALTH.timeoutMs + 300, `detected after ${detectMs} ms`);
    const { c } = await greet(plain.port('imap', 'starttls'));
    const t0 = Date.now();
    const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
    const ms = Date.now() - t0;
    assert.match(r, /^a NO \[UNAVAILABLE\]/m);
    assert.ok(ms < 300, `answered in ${ms} ms`);
    c.close();
    console.log(`      detection ${detectMs} ms, [UNAVAILABLE] answer ${ms} ms`);
  });

  it('with a standby configured, alice logs in on backend-b while backend-a is down', async () => {
    await waitState(paired, 'backend-a', 'down', 3000);
    const { c } = await greet(paired.port('imap', 'starttls'));
    const r = await c.command('a', `LOGIN alice ${env.world.users.alice.password}`);
    assert.match(r, /^a OK/m, `${r} ${JSON.stringify(paired.logs.filter((l) => l['msg'] === 'login failed').slice(-2))}`);
    c.close();
    let log = '';
    for (let i = 0; i < 30 && !/Login: user=<alice>/.test(log); i++) { await new Promise((res) => setTimeout(res, 50)); log = await env.world.backends.b.readLog(); }
    assert.match(log, /imap-login: Info: Login: user=<alice>/);
  });

  it('shows the change in metrics, /backends, the hook command and `status` (exit 2)', async () => {
    const m = (await adminGet(plain, '/metrics')).text;
    assert.match(m, /mailproxy_backend_up\{backend="backend-a",protocol="imap"\} 0/);
    assert.match(m, /mailproxy_backend_state_transitions_total\{backend="backend-a",from="up",to="(suspect|down)"\} [1-9]/);
    assert.match(m, /mailproxy_logins_total\{protocol="imap",result="backend_down"\} [1-9]/);
    for (let i = 0; i < 40 && !(existsSync(hookFile) && /backend-a \S+ down/.test(readFileSync(hookFile, 'utf8'))); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(readFileSync(hookFile, 'utf8'), /^backend-a \S+ down$/m);
    const lines: string[] = [];
    const code = await runStatus({ admin: { ...plain.config.admin, port: plain.app.admin!.port } }, { print: (l) => lines.push(l) });
    assert.equal(code, 2);
    assert.match(lines.join('\n'), /backend-a/);
  });

  it('restarting backend-a: up again, logins go to the primary (marker), and standby sessions are closed on failback', async () => {
    // a session that failed over to the standby while the primary was down
    const { c: onStandby } = await greet(paired.port('imap', 'starttls'));
    assert.match(await onStandby.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    await env.world.backends.a.start();
    const upMs = await waitState(plain, 'backend-a', 'up', 5000);
    await waitState(paired, 'backend-a', 'up', 5000);
    const bye = await onStandby.readUntil(/^\* BYE/, 3000);
    assert.match(bye, /^\* BYE/m);
    const { c } = await greet(paired.port('imap', 'starttls'));
    assert.match(await c.command('a', `LOGIN alice ${env.world.users.alice.password}`), /^a OK/m);
    assert.match(await firstMessageHeader(c, 'X-Test-Backend'), /backend-a/);
    c.close();
    for (let i = 0; i < 60 && !/^backend-a down \S+$/m.test(readFileSync(hookFile, 'utf8')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(readFileSync(hookFile, 'utf8'), /^backend-a down \S+$/m);
    console.log(`      recovery ${upMs} ms`);
  });

  it('a SIGSTOPped backend (accepts TCP, never answers) is detected by the probe timeout and its IDLE sessions get * BYE', async () => {
    const { c } = await greet(plain.port('imap', 'starttls'));
    assert.match(await c.command('a', `LOGIN bob ${env.world.users.bob.password}`), /^a OK/m);
    await c.command('s', 'SELECT INBOX');
    c.send('i IDLE');
    await c.readLine();
    env.world.backends.b.pause();
    try {
      const detectMs = await waitState(plain, 'backend-b', 'down', 5000);
      const bye = await c.readUntil(/^\* BYE/, 3000);
      assert.match(bye, /^\* BYE \[UNAVAILABLE\]/m);
      console.log(`      SIGSTOP detection ${detectMs} ms`);
    } finally { env.world.backends.b.resume(); }
    await waitState(plain, 'backend-b', 'up', 5000);
  });
});
