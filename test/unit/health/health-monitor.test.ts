// Proves the HealthMonitor facade: admit (standby, trickle, maintenance), side effects, snapshot, worker role, reload.
// Must not use sockets or real time (probe results are fed in directly).
import assert from 'node:assert/strict';
import { routeForBackend, type Route, type RouteProtocol } from '../../../src/directory/backends.js';
import { isProxyError } from '../../../src/errors.js';
import { HealthMonitor, type BackendTransition, type EndpointTransition } from '../../../src/health/health.js';
import type { HookEvent } from '../../../src/health/hooks.js';
import type { ProbeResult } from '../../../src/health/probe.js';
import { backendSplitBrain, backendStateTransitionsTotal, backendUp } from '../../../src/metrics.js';
import { configSchema } from '../../../src/config/schema.js';
import { probeTargets } from '../../../src/health/prober.js';
import { FakeClock } from './fake-clock.js';
import { testConfig } from './helpers.js';

async function metricValue(metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }, labels: Record<string, string>): Promise<number | undefined> {
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

function probe(backend: string, protocol: RouteProtocol, ok: boolean, at = 0): ProbeResult {
  return { backend, protocol, ok, at, latencyMs: 3, ...(ok ? { identity: `${backend} ready` } : { failure: 'connect', error: 'ECONNREFUSED: refused' }) };
}

function setup(extra: { health?: Record<string, unknown> } = {}) {
  const config = testConfig(extra);
  const clock = new FakeClock();
  const downs: string[] = [];
  const hooks: HookEvent[] = [];
  const monitor = new HealthMonitor({
    config,
    clock,
    onBackendDown: (b, p) => downs.push(`${b}/${p}`),
    hooks: { fire: async (ev) => { hooks.push(ev); } },
  });
  const route = (name: string, p: RouteProtocol = 'imap'): Route => routeForBackend(config, name, p);
  const down = (name: string, p: RouteProtocol = 'imap') => { monitor.recordProbe(probe(name, p, false)); monitor.recordProbe(probe(name, p, false)); };
  const up = (name: string, p: RouteProtocol = 'imap') => { monitor.recordProbe(probe(name, p, true)); monitor.recordProbe(probe(name, p, true)); };
  return { config, clock, monitor, downs, hooks, route, down, up };
}

function code(fn: () => unknown): string | undefined {
  try { fn(); return undefined; } catch (e) { return isProxyError(e) ? e.code : 'not a ProxyError'; }
}

describe('health/HealthMonitor', () => {
  it('admits unknown, up and suspect backends to their own route', () => {
    const { monitor, route } = setup();
    assert.equal(monitor.admit(route('c')).backend, 'c', 'unknown is tried');
    monitor.recordProbe(probe('c', 'imap', true));
    assert.equal(monitor.stateOf('c', 'imap'), 'up');
    monitor.recordProbe(probe('c', 'imap', false));
    assert.equal(monitor.stateOf('c', 'imap'), 'suspect');
    assert.equal(monitor.admit(route('c')).backend, 'c');
  });

  it('maintenance fails fast with BACKEND_MAINTENANCE, for every protocol, and can be switched off', () => {
    const { monitor, route } = setup();
    assert.equal(monitor.setMaintenance('a', true), true);
    assert.equal(code(() => monitor.admit(route('a'))), 'BACKEND_MAINTENANCE');
    assert.equal(code(() => monitor.admit(route('a', 'pop3'))), 'BACKEND_MAINTENANCE');
    assert.equal(code(() => monitor.admit(route('a', 'submission'))), 'BACKEND_MAINTENANCE', 'lazily created endpoints inherit maintenance');
    monitor.setMaintenance('a', false);
    assert.equal(monitor.admit(route('a')).backend, 'a');
    assert.equal(monitor.setMaintenance('nope', true), false);
  });

  it('down fails fast with BACKEND_DOWN, except one trickle per interval', async () => {
    const { monitor, route, down, clock } = setup();
    down('c');
    assert.equal(monitor.stateOf('c', 'imap'), 'down');
    assert.equal(code(() => monitor.admit(route('c'))), 'BACKEND_DOWN');
    await clock.advance(1000);
    assert.equal(monitor.admit(route('c')).backend, 'c', 'the trickle');
    assert.equal(code(() => monitor.admit(route('c'))), 'BACKEND_DOWN');
    assert.equal(monitor.admit(route('c', 'pop3')).backend, 'c', 'other protocols have their own state');
  });

  it('passive reports feed the same state', () => {
    const { monitor, route } = setup();
    monitor.report(route('c'), 'fail');
    monitor.report(route('c'), 'fail');
    assert.equal(monitor.stateOf('c', 'imap'), 'down');
    monitor.report(route('c'), 'ok');
    monitor.report(route('c'), 'ok');
    assert.equal(monitor.stateOf('c', 'imap'), 'up');
  });

  it('hosts outside the backend table get state from passive outcomes', () => {
    const { monitor, config } = setup();
    const r = routeForBackend(config, 'mail7.example.net', 'imap');
    monitor.report(r, 'fail');
    monitor.report(r, 'fail');
    assert.equal(code(() => monitor.admit(r)), 'BACKEND_DOWN');
    assert.ok(monitor.snapshot().some((b) => b.backend === 'mail7.example.net' && b.state === 'down'));
  });

  describe('standby', () => {
    it('goes to the standby only while the primary is down and the standby is up', () => {
      const { monitor, route, down, up } = setup();
      up('b');
      assert.equal(monitor.admit(route('a')).backend, 'a', 'primary unknown: primary');
      up('a');
      assert.equal(monitor.admit(route('a')).backend, 'a', 'primary up: primary');
      down('a');
      const r = monitor.admit(route('a'));
      assert.equal(r.backend, 'b');
      assert.equal(r.port, 2143);
      assert.equal(r.host, '127.0.0.2');
      up('a');
      assert.equal(monitor.admit(route('a')).backend, 'a', 'primary back: primary again, never both');
    });

    it('onFailback fires when a primary with a standby comes back from down', () => {
      const config = testConfig();
      const fb: string[] = [];
      const m = new HealthMonitor({ config, clock: new FakeClock(), hooks: { fire: async () => undefined }, onFailback: (p, s, proto) => fb.push(`${p}>${s}/${proto}`) });
      const feed = (b: string, ok: boolean) => m.recordProbe(probe(b, 'imap', ok));
      feed('a', false); feed('a', false);
      feed('c', false); feed('c', false);
      assert.deepEqual(fb, []);
      feed('a', true); feed('a', true);
      feed('c', true); feed('c', true);
      assert.deepEqual(fb, ['a>b/imap'], 'only backends with a standby');
    });

    it('an unknown standby is not used', () => {
      const { monitor, route, down } = setup();
      down('a');
      assert.equal(code(() => monitor.admit(route('a'))), 'BACKEND_DOWN');
    });

    it('a down or maintenance standby is not used', () => {
      const { monitor, route, down, up } = setup();
      down('a');
      down('b');
      assert.equal(code(() => monitor.admit(route('a'))), 'BACKEND_DOWN');
      up('b');
      monitor.setMaintenance('b', true);
      assert.equal(code(() => monitor.admit(route('a'))), 'BACKEND_DOWN');
    });

    it('a suspect standby still serves; the standby is per protocol', () => {
      const { monitor, route, down, up } = setup();
      up('b');
      monitor.recordProbe(probe('b', 'imap', false));
      assert.equal(monitor.stateOf('b', 'imap'), 'suspect');
      down('a');
      assert.equal(monitor.admit(route('a')).backend, 'b');
      down('a', 'pop3');
      assert.equal(code(() => monitor.admit(route('a', 'pop3'))), 'BACKEND_DOWN', 'b pop3 unknown');
    });

    it('no trickle to the primary while its standby serves (two servers on one mailbox)', async () => {
      const { monitor, route, down, up, clock } = setup();
      up('b');
      down('a');
      for (let i = 0; i < 5; i++) {
        await clock.advance(1000);
        assert.equal(monitor.admit(route('a')).backend, 'b');
      }
    });

    it('primary in maintenance is not failed over', () => {
      const { monitor, route, up } = setup();
      up('b');
      monitor.setMaintenance('a', true);
      assert.equal(code(() => monitor.admit(route('a'))), 'BACKEND_MAINTENANCE');
    });
  });

  it('each transition emits an event, sets backend_up, counts backend-level transitions, fires hooks, calls onBackendDown once', async () => {
    const { monitor, downs, hooks, down, up } = setup();
    const eps: EndpointTransition[] = [];
    const bes: BackendTransition[] = [];
    monitor.on('transition', (t) => eps.push(t));
    monitor.on('backend', (t) => bes.push(t));
    const before = (await metricValue(backendStateTransitionsTotal, { backend: 'c', from: 'suspect', to: 'down' })) ?? 0;
    up('c');
    down('c');
    monitor.recordProbe(probe('c', 'imap', false));
    assert.deepEqual(eps.map((t) => `${t.from}>${t.to}`), ['unknown>up', 'up>suspect', 'suspect>down']);
    assert.deepEqual(bes.map((t) => `${t.from}>${t.to}`), ['unknown>up', 'up>suspect', 'suspect>down']);
    assert.deepEqual(downs, ['c/imap']);
    assert.equal(await metricValue(backendUp, { backend: 'c', protocol: 'imap' }), 0);
    assert.equal(await metricValue(backendStateTransitionsTotal, { backend: 'c', from: 'suspect', to: 'down' }), before + 1);
    // Hooks hear settled changes: up -> down, not the suspect step on the way (health.flapDetection).
    assert.deepEqual(hooks.map((h) => [h.backend, h.from, h.to]), [['c', 'unknown', 'up'], ['c', 'up', 'down']]);
    assert.match(hooks[1]!.reason, /imap: probe failed/);
    up('c');
    assert.equal(await metricValue(backendUp, { backend: 'c', protocol: 'imap' }), 1);
  });

  it('the backend state folds its endpoints (worst wins) and hooks see only backend-level changes', () => {
    const { monitor, hooks, down, up } = setup();
    up('a');
    assert.equal(monitor.snapshot().find((b) => b.backend === 'a')!.state, 'unknown', 'pop3 still unknown');
    up('a', 'pop3');
    assert.equal(monitor.snapshot().find((b) => b.backend === 'a')!.state, 'up');
    down('a', 'pop3');
    assert.equal(monitor.snapshot().find((b) => b.backend === 'a')!.state, 'down');
    assert.deepEqual(hooks.filter((h) => h.backend === 'a').map((h) => h.to), ['up', 'down']);
  });

  it('a link losing packets (30 up/suspect/down changes in 25 s) runs hooks a few times, not 30: flapping, then one summary when quiet', async () => {
    const { monitor, hooks, clock, config } = setup();
    const states: string[] = [];
    monitor.on('backend', (t: BackendTransition) => states.push(t.to));
    monitor.recordProbe(probe('c', 'imap', true, clock.now()));
    // One in four probes lost, and now and then two in a row (down for a moment): every 250 ms for 25 s.
    for (let i = 1; i <= 100; i++) {
      clock.set(clock.now() + 250);
      monitor.recordProbe(probe('c', 'imap', !(i % 4 === 0 || i % 12 === 1), clock.now()));
    }
    const fired = hooks.filter((h) => h.backend === 'c');
    assert.ok(states.length >= 30, `the true state changed ${states.length} times (metrics, logs and the API see every one)`);
    // The first start (unknown > up), the changes below the flap threshold (default 6 in 60 s), and the flap's start.
    assert.ok(fired.length <= config.health.flapDetection.maxTransitions + 1, `hooks ran ${fired.length} times: ${fired.map((h) => `${h.from}>${h.to}`).join(' ')}`);
    assert.equal(fired.at(-1)!.to, 'flapping');
    assert.equal(monitor.snapshot().find((b) => b.backend === 'c')!.flapping, true);
    assert.equal(monitor.snapshot().find((b) => b.backend === 'c')!.state, monitor.stateOf('c', 'imap'), 'the snapshot shows the true state');
    // Stable for quietMs: one event ends the flap with the state it settled in.
    for (let i = 0; i < 70; i++) { clock.set(clock.now() + 1000); monitor.recordProbe(probe('c', 'imap', true, clock.now())); }
    const end = hooks.filter((h) => h.backend === 'c').slice(fired.length);
    assert.deepEqual(end.map((h) => `${h.from}>${h.to}`), ['flapping>up']);
    assert.match(end[0]!.reason, /changes not run as hooks/);
    assert.equal(monitor.snapshot().find((b) => b.backend === 'c')!.flapping, undefined);
  });

  it('snapshot shows state, since, last probe and session counts', () => {
    const { monitor, clock } = setup();
    monitor.recordProbe(probe('b', 'imap', true, clock.now()));
    const snap = monitor.snapshot({ b: 3 });
    assert.deepEqual(snap.map((b) => b.backend), ['a', 'b', 'c']);
    const b = snap.find((x) => x.backend === 'b')!;
    assert.equal(b.sessions, 3);
    assert.equal(snap.find((x) => x.backend === 'a')!.standby, 'b');
    const imap = b.endpoints.find((e) => e.protocol === 'imap')!;
    assert.equal(imap.state, 'up');
    assert.equal(imap.since, new Date(clock.now()).toISOString());
    assert.deepEqual(imap.lastProbe, { ok: true, at: new Date(clock.now()).toISOString(), latencyMs: 3, identity: 'b ready' });
    assert.equal(b.endpoints.find((e) => e.protocol === 'pop3')!.state, 'unknown');
  });

  it('a worker adopts the primary snapshot, fires onBackendDown, forwards passive reports', () => {
    const primary = setup();
    primary.up('b');
    primary.down('a');
    primary.monitor.setMaintenance('c', true);
    const clock = new FakeClock();
    const downs: string[] = [];
    const forwarded: string[] = [];
    const worker = new HealthMonitor({ config: primary.config, clock, role: 'worker', onBackendDown: (b, p) => downs.push(`${b}/${p}`), forwardReport: (r, o) => forwarded.push(`${r.backend}:${o}`) });
    worker.applyState(JSON.parse(JSON.stringify(primary.monitor.snapshot())));
    assert.equal(worker.stateOf('a', 'imap'), 'down');
    assert.deepEqual(downs, ['a/imap']);
    assert.equal(worker.admit(primary.route('a')).backend, 'b', 'worker fails over like the primary');
    assert.equal(code(() => worker.admit(primary.route('c'))), 'BACKEND_MAINTENANCE');
    worker.report(primary.route('c'), 'fail');
    worker.report(primary.route('c'), 'fail');
    assert.deepEqual(forwarded, ['c:fail', 'c:fail']);
    assert.equal(worker.snapshot().find((b) => b.backend === 'a')!.state, 'down');
    worker.applyState(JSON.parse(JSON.stringify(primary.monitor.snapshot())));
    assert.deepEqual(downs, ['a/imap'], 're-applying the same state is quiet');
  });

  it('onFailover: an endpoint answered by another node (probe or login) is reported once per change, not during a split brain; workers see it from the snapshot', () => {
    const config = testConfig({ health: { splitBrain: { windowMs: 60_000 } } });
    const clock = new FakeClock();
    const moves: string[] = [];
    const monitor = new HealthMonitor({ config, clock, hooks: { fire: async () => undefined }, onFailover: (b, p, id) => moves.push(`${b}/${p} ${id}`) });
    const seen = (identity: string) => { clock.set(clock.now() + 1000); monitor.recordProbe({ backend: 'a', protocol: 'imap', ok: true, at: clock.now(), latencyMs: 1, identity }); };
    const worker = new HealthMonitor({ config, clock, role: 'worker', onFailover: (b, p, id) => moves.push(`worker ${b}/${p} ${id}`) });
    seen('node A');
    seen('node A');
    worker.applyState(JSON.parse(JSON.stringify(monitor.snapshot())));
    assert.deepEqual(moves, [], 'the first identity is no change');
    monitor.report(routeForBackend(config, 'a', 'imap'), 'ok', 'node B');
    assert.deepEqual(moves, ['a/imap node B'], 'a login greeted by another node shows the move first');
    seen('node B');
    worker.applyState(JSON.parse(JSON.stringify(monitor.snapshot())));
    assert.deepEqual(moves, ['a/imap node B', 'worker a/imap node B']);
    seen('node A');
    seen('node B');
    assert.equal(monitor.snapshot().find((b) => b.backend === 'a')!.endpoints.find((e) => e.protocol === 'imap')!.splitBrain, true);
    seen('node A');
    assert.deepEqual(moves, ['a/imap node B', 'worker a/imap node B', 'a/imap node A'], 'A→B→A is still a move; once a split brain, no more');
  });

  it('reload adds and forgets backends and endpoints', () => {
    const { monitor } = setup();
    monitor.setMaintenance('c', true);
    monitor.reload(testConfig({ backends: { a: { host: 'h', imap: { port: 1 } }, d: { host: 'd', lmtp: { port: 24 } } } }));
    const snap = monitor.snapshot();
    assert.deepEqual(snap.map((b) => b.backend), ['a', 'd']);
    assert.deepEqual(snap[0]!.endpoints.map((e) => e.protocol), ['imap']);
    assert.deepEqual(snap[1]!.endpoints.map((e) => e.protocol), ['lmtp']);
  });

  it('a throwing listener or callback never reaches the caller', () => {
    const config = testConfig();
    const monitor = new HealthMonitor({ config, clock: new FakeClock(), onBackendDown: () => { throw new Error('boom'); }, hooks: { fire: async () => undefined } });
    monitor.on('transition', () => { throw new Error('listener boom'); });
    const r = routeForBackend(config, 'c', 'imap');
    assert.doesNotThrow(() => { monitor.report(r, 'fail'); monitor.report(r, 'fail'); });
    assert.equal(monitor.stateOf('c', 'imap'), 'down');
  });
});

describe('health/HealthMonitor: ride-through, hangs, split brain, implied endpoints', () => {
  it('a backend that served and now refuses for less than rideThroughMs is still admitted (logins retry); after that, fail fast', async () => {
    const { monitor, route, down, up, clock } = setup({ health: { rideThroughMs: 5000, trickleIntervalMs: 0 } });
    up('c');
    await clock.advance(1000);
    down('c');
    assert.equal(monitor.stateOf('c', 'imap'), 'down');
    assert.equal(monitor.admit(route('c')).backend, 'c', 'within the hold: admitted');
    assert.equal(monitor.rideThroughUntil(route('c')), clock.now() + 5000);
    await clock.advance(4999);
    assert.equal(monitor.admit(route('c')).backend, 'c');
    await clock.advance(1);
    assert.equal(code(() => monitor.admit(route('c'))), 'BACKEND_DOWN');
    assert.equal(monitor.rideThroughUntil(route('c')), null);
  });

  it('a hung backend (probe accepted, no greeting) is not ridden through: down means fail fast at once', async () => {
    const { monitor, route, up } = setup({ health: { rideThroughMs: 5000, trickleIntervalMs: 0 } });
    up('c');
    const hang: ProbeResult = { backend: 'c', protocol: 'imap', ok: false, at: 0, latencyMs: 800, failure: 'timeout', hang: true, error: 'accepted, but no greeting' };
    monitor.recordProbe(hang);
    monitor.recordProbe(hang);
    monitor.recordProbe(hang);
    assert.equal(code(() => monitor.admit(route('c'))), 'BACKEND_DOWN');
    assert.equal(monitor.rideThroughUntil(route('c')), null);
    monitor.report(route('c'), 'ok');
    assert.equal(monitor.stateOf('c', 'imap'), 'up', 'a real login that worked counts at once');
  });

  it('split brain from probe and login identities: gauge, hook, snapshot; policy refuse gives BACKEND_SPLIT_BRAIN until one identity is stable', async () => {
    const { monitor, route, hooks, clock } = setup({ health: { splitBrain: { policy: 'refuse', windowMs: 10_000, stableMs: 3000 } } });
    const seen = (identity: string, viaLogin: boolean) => {
      if (viaLogin) monitor.report(route('c'), 'ok', identity);
      else monitor.recordProbe({ ...probe('c', 'imap', true), identity });
    };
    seen('node1', false);
    seen('node2', true);
    assert.equal(monitor.admit(route('c')).backend, 'c', 'one change is a failover');
    seen('node1', false);
    seen('node2', true);
    assert.equal(code(() => monitor.admit(route('c'))), 'BACKEND_SPLIT_BRAIN');
    assert.equal(await metricValue(backendSplitBrain, { backend: 'c' }), 1);
    assert.deepEqual(hooks.filter((h) => h.to === 'split_brain').map((h) => [h.backend, h.protocol]), [['c', 'imap']]);
    assert.equal(monitor.snapshot().find((b) => b.backend === 'c')!.endpoints[0]!.splitBrain, true);
    await clock.advance(2000);
    seen('node2', false);
    await clock.advance(1000);
    seen('node2', false);
    assert.equal(monitor.admit(route('c')).backend, 'c', 'stable for stableMs: serving again');
    assert.equal(await metricValue(backendSplitBrain, { backend: 'c' }), 0);
    assert.ok(hooks.some((h) => h.from === 'split_brain'));
  });

  it('workers adopt failingSince, hang and split brain from the primary snapshot', () => {
    const primary = setup({ health: { rideThroughMs: 5000, trickleIntervalMs: 0 } });
    primary.up('c');
    primary.down('c');
    const worker = new HealthMonitor({ config: primary.config, role: 'worker', clock: primary.clock });
    worker.applyState(primary.monitor.snapshot());
    assert.equal(worker.admit(primary.route('c')).backend, 'c', 'within the hold on the worker too');
    assert.equal(worker.rideThroughUntil(primary.route('c')), primary.clock.now() + 5000);
  });

  it('an smtp listener makes each backend\'s inbound endpoint a probe target even without a table entry', () => {
    const config = configSchema.parse({
      listeners: [{ protocol: 'smtp', port: 0, tls: 'none' }],
      directory: { type: 'static', static: { file: 'users.yaml' } },
      backends: { a: { host: '127.0.0.1', imap: { port: 1143 } }, b: { host: '127.0.0.2', imap: { port: 2143 }, inboundDelivery: 'smtp' } },
    });
    assert.deepEqual(probeTargets(config).map((r) => `${r.backend}/${r.protocol}:${r.port}`), ['a/imap:1143', 'a/lmtp:24', 'b/imap:2143', 'b/smtp:25']);
  });
});
