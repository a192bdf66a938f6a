// Proves probe scheduling: jitter, one probe in flight, identity-change counting, target reload.
// Must not open real sockets (fake dial) or wait on real time (fake clock).
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { ProbeResult } from '../../../src/health/probe.js';
import { Prober, probeTargets } from '../../../src/health/prober.js';
import { backendIdentityChangesTotal, probesTotal } from '../../../src/metrics.js';
import { FakeClock } from './fake-clock.js';
import { FakeSocket, testConfig } from './helpers.js';

async function counter(metric: typeof probesTotal, labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x))?.value ?? 0;
}

function world(opts: { intervalMs?: number; timeoutMs?: number; random?: () => number } = {}) {
  const config = testConfig({ backends: { p1: { host: '127.0.0.1', imap: { port: 1 }, lmtp: { port: 2 } }, p2: { host: '127.0.0.1', pop3: { port: 3 } } } });
  const clock = new FakeClock();
  const results: ProbeResult[] = [];
  const dials: string[] = [];
  const greeting: Record<string, string | null> = { 'p1/imap': '* OK one\r\n', 'p1/lmtp': '220 one LMTP\r\n', 'p2/pop3': '+OK two\r\n' };
  const changes: string[] = [];
  const prober = new Prober({
    targets: probeTargets(config),
    intervalMs: opts.intervalMs ?? 1000,
    jitterRatio: 0.2,
    timeoutMs: opts.timeoutMs ?? 500,
    clock,
    random: opts.random ?? (() => 0.5),
    onResult: (r) => results.push(r),
    onIdentityChange: (c) => changes.push(`${c.backend}/${c.protocol}: ${c.from} -> ${c.to}`),
    dial: (route: Route) => {
      const key = `${route.backend}/${route.protocol}`;
      dials.push(key);
      const s = new FakeSocket();
      const g = greeting[key];
      if (g) queueMicrotask(() => s.serve(g));
      return s;
    },
  });
  return { config, clock, prober, results, dials, greeting, changes };
}

describe('health/prober', () => {
  it('targets every configured endpoint of every backend', () => {
    const { config } = world();
    assert.deepEqual(probeTargets(config).map((r) => `${r.backend}/${r.protocol}:${r.port}`), ['p1/imap:1', 'p1/lmtp:2', 'p2/pop3:3']);
  });

  it('probes each endpoint first within the jitter window, then every interval ± jitter', async () => {
    const { clock, prober, results } = world();
    prober.start();
    await clock.advance(99);
    assert.equal(results.length, 0);
    await clock.advance(1);
    assert.deepEqual(results.map((r) => `${r.backend}/${r.protocol}:${r.ok}`).sort(), ['p1/imap:true', 'p1/lmtp:true', 'p2/pop3:true']);
    await clock.advance(1000);
    assert.equal(results.length, 6);
    prober.stop();
    await clock.advance(10_000);
    assert.equal(results.length, 6, 'stopped');
  });

  it('jitter stays within ± jitterRatio of the interval', () => {
    let r = 0;
    const { prober } = world({ random: () => r });
    assert.equal(prober.nextDelay(), 800);
    r = 0.999999;
    assert.equal(prober.nextDelay(), 1200);
    r = 0.5;
    assert.equal(prober.nextDelay(), 1000);
  });

  it('one probe in flight per endpoint: probeNow joins it, the loop waits for it', async () => {
    const w = world({ intervalMs: 100, timeoutMs: 1000 });
    w.greeting['p1/imap'] = null;
    w.prober.start();
    await w.clock.advance(10);
    const a = w.prober.probeNow('p1', 'imap');
    const b = w.prober.probeNow('p1', 'imap');
    assert.equal(a, b);
    await w.clock.advance(500);
    assert.equal(w.dials.filter((d) => d === 'p1/imap').length, 1, 'no second probe while the first waits for its timeout');
    await w.clock.advance(500);
    const r = await a!;
    assert.equal(r.failure, 'timeout');
    assert.equal(w.prober.probeNow('nope', 'imap'), undefined);
    w.prober.stop();
  });

  it('counts probes by result and logs/counts identity changes', async () => {
    const w = world();
    const okBefore = await counter(probesTotal, { backend: 'p2', protocol: 'pop3', result: 'ok' });
    const chBefore = await counter(backendIdentityChangesTotal, { backend: 'p2', protocol: 'pop3' });
    await w.prober.probeNow('p2', 'pop3');
    await w.prober.probeNow('p2', 'pop3');
    assert.equal(w.changes.length, 0, 'same identity twice');
    w.greeting['p2/pop3'] = '+OK other node\r\n';
    await w.prober.probeNow('p2', 'pop3');
    w.greeting['p2/pop3'] = '+OK two\r\n';
    await w.prober.probeNow('p2', 'pop3');
    assert.deepEqual(w.changes, ['p2/pop3: two -> other node', 'p2/pop3: other node -> two'], 'flapping identity (split brain) shows as repeated changes');
    assert.equal(await counter(backendIdentityChangesTotal, { backend: 'p2', protocol: 'pop3' }), chBefore + 2);
    assert.equal(await counter(probesTotal, { backend: 'p2', protocol: 'pop3', result: 'ok' }), okBefore + 4);
    w.greeting['p2/pop3'] = '-ERR no\r\n';
    const failBefore = await counter(probesTotal, { backend: 'p2', protocol: 'pop3', result: 'bad_greeting' });
    await w.prober.probeNow('p2', 'pop3');
    assert.equal(await counter(probesTotal, { backend: 'p2', protocol: 'pop3', result: 'bad_greeting' }), failBefore + 1);
  });

  it('setTargets drops removed endpoints and schedules new ones', async () => {
    const w = world();
    w.prober.start();
    await w.clock.advance(100);
    const cfg2 = testConfig({ backends: { p2: { host: '127.0.0.1', pop3: { port: 3 } }, p3: { host: '127.0.0.1', imap: { port: 9 } } } });
    w.greeting['p3/imap'] = '* OK three\r\n';
    w.prober.setTargets(probeTargets(cfg2));
    w.results.length = 0;
    await w.clock.advance(1100);
    assert.deepEqual([...new Set(w.results.map((r) => `${r.backend}/${r.protocol}`))].sort(), ['p2/pop3', 'p3/imap']);
    w.prober.stop();
  });

  it('a probe that cannot open a socket on this host (EMFILE) gives health no result, only the metric', async () => {
    const clock = new FakeClock();
    const config = testConfig({ backends: { px: { host: 'h', imap: { port: 1 } } } });
    const results: ProbeResult[] = [];
    let code = 'EMFILE';
    const prober = new Prober({
      targets: probeTargets(config), intervalMs: 100, jitterRatio: 0, timeoutMs: 50, clock,
      onResult: (r) => results.push(r),
      dial: () => { const s = new FakeSocket(); queueMicrotask(() => s.destroy(Object.assign(new Error(`connect ${code}`), { code }))); return s; },
    });
    const before = await counter(probesTotal, { backend: 'px', protocol: 'imap', result: 'local' });
    await prober.probeNow('px', 'imap');
    assert.equal(results.length, 0, 'no result for health');
    assert.equal(await counter(probesTotal, { backend: 'px', protocol: 'imap', result: 'local' }), before + 1);
    code = 'ECONNREFUSED';
    await prober.probeNow('px', 'imap');
    assert.deepEqual(results.map((r) => `${r.ok} ${r.failure}`), ['false connect'], 'a refusal by the backend still counts');
  });

  it('a throwing result handler does not stop the loop', async () => {
    const clock = new FakeClock();
    const config = testConfig({ backends: { p: { host: 'h', imap: { port: 1 } } } });
    let n = 0;
    const prober = new Prober({
      targets: probeTargets(config), intervalMs: 100, jitterRatio: 0, timeoutMs: 50, clock,
      onResult: () => { n++; throw new Error('boom'); },
      dial: () => { const s = new FakeSocket(); queueMicrotask(() => s.serve('* OK\r\n')); return s; },
    });
    prober.start();
    await clock.advance(350);
    assert.ok(n >= 3, `ran ${n} probes`);
    prober.stop();
  });
});
