// Proves the files under deploy/ are valid for the tools that load them: promtool checks and unit-tests the alert rules
// (every alert has a firing test), systemd-analyze verifies the unit and its hardening, the dashboard is well-formed.
// Must not start the proxy (deploy-metrics.test.ts scrapes a real one); a missing tool fails naming its Debian package.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { findProgram } from './harness/binaries.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const RULES = join(ROOT, 'deploy/prometheus/mailproxy-rules.yml');
const RULE_TESTS = join(ROOT, 'deploy/prometheus/mailproxy-rules.test.yml');
const UNIT = join(ROOT, 'deploy/systemd/mailproxy.service');

function run(file: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 60_000, cwd: opts.cwd }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

/** The program's path, or an Error naming the Debian package (never a silent skip). */
function tool(name: string, pkg: string): string {
  const path = findProgram(name);
  if (!path) throw new Error(`${name} not found: install the Debian package '${pkg}' (apt-get install --no-install-recommends ${pkg}, or run scripts/ensure-packages.sh as root)`);
  return path;
}

describe('deploy/prometheus alert rules', function () {
  this.timeout(60_000);

  it('pass promtool check rules', async () => {
    const r = await run(tool('promtool', 'prometheus'), ['check', 'rules', RULES]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });

  it('pass their promtool unit tests', async () => {
    const r = await run(tool('promtool', 'prometheus'), ['test', 'rules', RULE_TESTS], { cwd: join(ROOT, 'deploy/prometheus') });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  it('has a unit test in which each alert fires, and one in which it stays silent', () => {
    const rules = parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string }> }> };
    const alerts = new Set(rules.groups.flatMap((g) => g.rules.map((r) => r.alert).filter((a): a is string => !!a)));
    const tests = parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    assert.ok(alerts.size >= 8, `only ${alerts.size} alerts`);
    for (const a of alerts) {
      assert.ok(cases.some((c) => c.alertname === a && c.exp_alerts.length > 0), `no promtool test where ${a} fires`);
      assert.ok(cases.some((c) => c.alertname === a && c.exp_alerts.length === 0), `no promtool test where ${a} stays silent`);
    }
  });

  it('a broken rule makes promtool fail (the check can fail)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailproxy-rules-'));
    try {
      const bad = join(dir, 'bad.yml');
      writeFileSync(bad, 'groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(mailproxy_logins_total[5m]\n');
      const r = await run(tool('promtool', 'prometheus'), ['check', 'rules', bad]);
      assert.notEqual(r.code, 0, r.out);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});

describe('deploy/systemd/mailproxy.service', function () {
  this.timeout(60_000);
  const unit = () => readFileSync(UNIT, 'utf8');
  /** Every value of KEY= in the unit (a key may repeat). */
  const values = (key: string) => unit().split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1).trim());

  it('passes systemd-analyze verify', async () => {
    // verify checks that ExecStart's program exists: point it at this machine's node for the check.
    const dir = mkdtempSync(join(tmpdir(), 'mailproxy-unit-'));
    try {
      const copy = join(dir, 'mailproxy.service');
      writeFileSync(copy, unit().replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
      const r = await run(tool('systemd-analyze', 'systemd'), ['verify', '--man=no', copy]);
      assert.equal(r.code, 0, r.out);
      assert.doesNotMatch(r.out, /mailproxy\.service:/, `systemd-analyze complained:\n${r.out}`);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  it('a unit with an unknown key or a bad value is reported by the same check (it can fail)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailproxy-unit-'));
    try {
      const copy = join(dir, 'mailproxy.service');
      writeFileSync(copy, unit().replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `).replace('NoNewPrivileges=yes', 'NoNewPrivileges=maybe\nProtectEverything=yes'));
      const r = await run(tool('systemd-analyze', 'systemd'), ['verify', '--man=no', copy]);
      assert.match(r.out, /mailproxy\.service:\d+: Failed to parse boolean/);
      assert.match(r.out, /mailproxy\.service:\d+: Unknown key 'ProtectEverything'/);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  it('is hardened: no new privileges, read-only system, only the port capability, fd limit', () => {
    assert.deepEqual(values('NoNewPrivileges'), ['yes']);
    assert.deepEqual(values('ProtectSystem'), ['strict']);
    assert.deepEqual(values('CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(values('AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
    assert.ok(Number(values('LimitNOFILE')[0]) >= 65536, 'LimitNOFILE');
    assert.ok(values('User').length === 1 && values('User')[0] !== 'root', 'runs as a dedicated user');
  });

  it('reloads with SIGHUP and stops with a SIGTERM drain that outlasts the drain deadline', () => {
    assert.deepEqual(values('ExecReload'), ['/bin/kill -HUP $MAINPID']);
    assert.deepEqual(values('KillSignal'), ['SIGTERM']);
    assert.deepEqual(values('KillMode'), ['mixed']);
    const stopSec = Number(values('TimeoutStopSec')[0]);
    const example = parse(readFileSync(join(ROOT, 'config/example.yaml'), 'utf8')) as { shutdown: { drainDeadlineMs: number } };
    assert.ok(stopSec * 1000 > example.shutdown.drainDeadlineMs + 5000, `TimeoutStopSec=${stopSec} must exceed shutdown.drainDeadlineMs (${example.shutdown.drainDeadlineMs} ms) with margin`);
    assert.match(values('ExecStart')[0] ?? '', / start -c \/etc\/mailproxy\/mailproxy\.yaml$/);
    assert.match(values('ExecStartPre')[0] ?? '', / check-config -c \/etc\/mailproxy\/mailproxy\.yaml$/);
  });
});

describe('deploy/grafana/mailproxy.json', () => {
  it('is a dashboard whose panels each query Prometheus and sit in a titled row', () => {
    const d = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/mailproxy.json'), 'utf8')) as { uid: string; panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }> };
    assert.equal(d.uid, 'mailproxy');
    assert.equal(d.panels[0]?.type, 'row');
    const rows = d.panels.filter((p) => p.type === 'row').map((p) => p.title);
    for (const want of [/logins/i, /sessions/i, /backend state/i, /probe/i, /ldap/i, /cache/i, /refused/i, /worker/i, /tier/i]) {
      assert.ok(rows.some((r) => want.test(r)), `no row matching ${String(want)} in ${rows.join(' | ')}`);
    }
    for (const p of d.panels.filter((x) => x.type !== 'row')) {
      assert.ok(p.targets?.length && p.targets.every((t) => /mailproxy_/.test(t.expr)), `panel '${p.title}' has no mailproxy query`);
    }
  });
});
