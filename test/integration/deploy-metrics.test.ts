// Proves every metric name the Grafana dashboard and the alert rules use exists in a real /metrics scrape of the test
// world (a child mailproxy, workers: 2, in front of real slapd + Dovecot, after real logins). Must not check values.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { worldRawConfig } from './proxy-fixture.js';
import { adminGet, startChildProxy, type ChildProxy } from './child-proxy.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const FILES = ['deploy/grafana/mailproxy.json', 'deploy/prometheus/mailproxy-rules.yml', 'deploy/prometheus/mailproxy-rules.test.yml'];

/**
 * Metrics added by open work (other branches) that this branch's proxy does not export yet. This list must only
 * shrink: the coordinator empties it once those branches are merged, and the test then proves them too.
 */
const ADDED_BY_OPEN_WORK = new Set<string>([
  // (empty: mailproxy_tier_up, mailproxy_tier_fallbacks_total and mailproxy_tls_certificate_expiry_seconds landed on main)
]);

/** Every `mailproxy_*` name in a file (queries, legends, descriptions, annotations). */
export function metricNamesIn(text: string): Set<string> {
  return new Set(text.match(/\bmailproxy_[a-z0-9_]*[a-z0-9]\b/g) ?? []);
}

/** Names a Prometheus text exposition defines: each `# TYPE` name, plus _bucket/_sum/_count of histograms and summaries. */
export function exposedNames(scrape: string): Set<string> {
  const names = new Set<string>();
  for (const m of scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  for (const m of scrape.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)) names.add(m[1]!);
  return names;
}

describe('deploy/: every metric the dashboard and the alert rules use is in a real /metrics scrape', function () {
  this.timeout(90_000);
  let world: World;
  let proxy: ChildProxy;
  let scrape = '';

  before(async () => {
    world = await startWorld();
    try {
      proxy = await startChildProxy(world, worldRawConfig(world, (c) => {
        c['workers'] = 2;
        c['log'] = { level: 'info' };
        c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'none' }];
        c['health'] = { enabled: true, intervalMs: 300, timeoutMs: 2000, rise: 1, fall: 2 };
        c['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      }), { name: 'deploy-metrics', timeoutMs: 40_000 });
      const port = proxy.port('imap', 'none');
      for (const password of [world.users.alice.password, 'wrong']) {
        const c = await LineClient.connect(port);
        try {
          await c.readLine();
          const r = await c.command('a', `LOGIN ${world.users.alice.uid} ${password}`);
          if (/^a OK/m.test(r)) await c.command('z', 'LOGOUT');
        } finally { c.close(); }
      }
      // A probe round has run once backend_up appears for the dead backend too.
      const t0 = Date.now();
      for (;;) {
        const r = await adminGet(proxy.adminPort!, '/metrics');
        scrape = r.body;
        if (r.status === 200 && /mailproxy_backend_up\{[^}]*backend="backend-dead"/.test(scrape)) break;
        if (Date.now() - t0 > 10_000) throw new Error(`no probe results in /metrics after 10 s:\n${scrape.slice(0, 2000)}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    } catch (e) {
      await proxy?.stop();
      await world.stop();
      throw e;
    }
  });
  after(async () => { await proxy?.stop(); await world?.stop(); });

  for (const file of FILES) {
    it(`${file}: each mailproxy_* name exists in the scrape (or is listed as added by open work)`, () => {
      const used = metricNamesIn(readFileSync(join(ROOT, file), 'utf8'));
      assert.ok(used.size > 0, `no metric names found in ${file}`);
      const exposed = exposedNames(scrape);
      const missing = [...used].filter((n) => !exposed.has(n) && !ADDED_BY_OPEN_WORK.has(n));
      assert.deepEqual(missing, [], `${file} uses metrics the proxy does not export: ${missing.join(', ')}`);
    });
  }

  it('the allow-list of metrics added by open work holds only names still missing from the scrape (it must shrink)', () => {
    const exposed = exposedNames(scrape);
    const landed = [...ADDED_BY_OPEN_WORK].filter((n) => exposed.has(n));
    assert.deepEqual(landed, [], `these metrics are exported now: remove them from ADDED_BY_OPEN_WORK in ${import.meta.url}`);
  });

  it('the name extraction sees histogram series and the scrape has samples from real logins', () => {
    const exposed = exposedNames(scrape);
    assert.ok(exposed.has('mailproxy_backend_login_seconds_bucket'));
    assert.ok(!exposed.has('mailproxy_no_such_metric'));
    assert.match(scrape, /^mailproxy_logins_total\{[^}]*result="ok"[^}]*\} [1-9]/m);
    assert.match(scrape, /^mailproxy_logins_total\{[^}]*result="auth_failed"[^}]*\} [1-9]/m);
  });
});
