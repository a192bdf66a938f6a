// Proves the files under deploy/ are valid for the tools that load them: promtool checks and unit-tests the alert rules
// (every alert has a firing test), systemd-analyze verifies the unit and its hardening, the dashboard is well-formed.
// Must not start the proxy (deploy-metrics.test.ts scrapes a real one); a missing tool fails naming its Debian package.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parse } from 'yaml';
import { findProgram } from './harness/binaries.js';
import { generateCert } from './harness/tls-cert.js';

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
    // check-config first: an invalid file fails `systemctl reload` visibly (a SIGHUP alone is refused only in the log).
    const reload = values('ExecReload');
    assert.equal(reload.length, 2, reload.join('\n'));
    assert.match(reload[0] ?? '', / check-config -c \/etc\/mailproxy\/mailproxy\.yaml$/);
    assert.equal(reload[1], '/bin/kill -HUP $MAINPID');
    assert.deepEqual(values('KillSignal'), ['SIGTERM']);
    assert.deepEqual(values('KillMode'), ['mixed']);
    const stopSec = Number(values('TimeoutStopSec')[0]);
    const example = parse(readFileSync(join(ROOT, 'config/example.yaml'), 'utf8')) as { shutdown: { drainDeadlineMs: number } };
    assert.ok(stopSec * 1000 > example.shutdown.drainDeadlineMs + 5000, `TimeoutStopSec=${stopSec} must exceed shutdown.drainDeadlineMs (${example.shutdown.drainDeadlineMs} ms) with margin`);
    assert.match(values('ExecStart')[0] ?? '', / start -c \/etc\/mailproxy\/mailproxy\.yaml$/);
    assert.match(values('ExecStartPre')[0] ?? '', / check-config -c \/etc\/mailproxy\/mailproxy\.yaml$/);
    // Restarted after a crash, not in a loop on an invalid file (check-config and start exit 78 for it: cli tests).
    assert.deepEqual(values('Restart'), ['on-failure']);
    assert.deepEqual(values('RestartPreventExitStatus'), ['78']);
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

describe('Dockerfile and the image config it names', function () {
  this.timeout(60_000);
  const dockerfile = () => readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  /** The final stage's lines (after the last FROM). */
  const finalStage = () => dockerfile().split(/^FROM /m).at(-1) ?? '';

  /** The repository file the final stage copies to the path the CMD's `-c` names. */
  function imageConfig(): { inImage: string; source: string } {
    const cmd = /^CMD (\[.*\])$/m.exec(finalStage());
    assert.ok(cmd, 'Dockerfile has a CMD in JSON form');
    const args = JSON.parse(cmd[1]!) as string[];
    const inImage = args[args.indexOf('-c') + 1];
    assert.ok(args[0] === 'start' && inImage, `CMD starts with -c FILE: ${cmd[1]}`);
    const copy = finalStage().split('\n').find((l) => /^COPY (?!--from)/.test(l) && l.trim().endsWith(` ${inImage}`));
    assert.ok(copy, `no COPY puts a file at ${inImage} (the CMD's config) in the final stage`);
    const source = copy.trim().split(/\s+/)[1]!;
    return { inImage, source };
  }

  it('the CMD names a config the image contains, and that config passes check-config', async () => {
    const { source } = imageConfig();
    const text = readFileSync(join(ROOT, source), 'utf8');
    const raw = parse(text) as { tls: { certFile: string; keyFile: string } };
    // The image makes its placeholder certificate at build time; here a test certificate stands in at the same keys.
    const df = dockerfile();
    assert.ok(df.includes(`-keyout /tls/${basename(raw.tls.keyFile)}`) && df.includes(`-out /tls/${basename(raw.tls.certFile)}`), 'the build makes the certificate the image config names');
    assert.match(finalStage(), new RegExp(`^COPY --from=build --chown=node:node /tls ${dirname(raw.tls.certFile)}$`, 'm'));
    const dir = mkdtempSync(join(tmpdir(), 'mailproxy-docker-'));
    try {
      const cert = await generateCert(tool('openssl', 'openssl'), dir);
      const copy = join(dir, 'mailproxy.yaml');
      writeFileSync(copy, text.replace(raw.tls.certFile, cert.certPath).replace(raw.tls.keyFile, cert.keyPath));
      const r = await run(process.execPath, [join(ROOT, 'dist/src/main.js'), 'check-config', '-c', copy]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /: OK \(7 listeners/);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  it('every listener and the admin API are on unprivileged ports the image EXPOSEs; HEALTHCHECK asks the admin port', () => {
    const { source } = imageConfig();
    const raw = parse(readFileSync(join(ROOT, source), 'utf8')) as { listeners: Array<{ port: number }>; admin: { port: number; address: string } };
    const exposed = (/^EXPOSE (.*)$/m.exec(finalStage())?.[1] ?? '').split(/\s+/).map(Number);
    for (const port of [...raw.listeners.map((l) => l.port), raw.admin.port]) {
      assert.ok(port >= 1024, `port ${port} is privileged: the image runs as a non-root user`);
      assert.ok(exposed.includes(port), `port ${port} is not in EXPOSE ${exposed.join(' ')}`);
    }
    assert.equal(raw.admin.address, '0.0.0.0');
    assert.match(finalStage(), new RegExp(`HEALTHCHECK .*http://127\\.0\\.0\\.1:${raw.admin.port}/healthz`));
    assert.match(finalStage(), /^USER node$/m);
  });

  it('PID 1 is an init (tini, installed in the final stage) that runs node: hook commands\' orphans are reaped', () => {
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(finalStage());
    assert.ok(entry, 'Dockerfile has an ENTRYPOINT in JSON form');
    const args = JSON.parse(entry[1]!) as string[];
    assert.deepEqual(args.slice(0, 3), ['/usr/bin/tini', '--', 'node'], `node is not PID 1: ${entry[1]}`);
    assert.match(finalStage(), /^RUN apt-get .*install .*\btini\b/m, 'the final stage installs tini');
  });
});
