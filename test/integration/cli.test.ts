// Proves the command line as an operator uses it: check-config (valid, invalid with file:line), lookup against real LDAP, usage errors.
// Must not start the proxy (lifecycle tests do) or test the directory's internals (directory tests do).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startWorld, type World } from './harness/world.js';
import { startProxy, worldConfig, worldRawConfig } from './proxy-fixture.js';
import { EXIT_CODES, USAGE } from '../../src/cli-usage.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 40_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('mailproxy command line', function () {
  this.timeout(30_000);
  let world: World;
  let good: string;

  before(async () => {
    world = await startWorld();
    good = join(world.dir, 'cli-good.yaml');
    writeFileSync(good, stringify(worldRawConfig(world)));
  });
  after(async () => { await world?.stop(); });

  it('check-config accepts a valid file and summarises it', async () => {
    const r = await run(['check-config', '-c', good]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /OK \(4 listeners, directory ldap, 3 backends\)/);
  });

  it('check-config rejects an unknown key naming file, line and key, with a non-zero exit', async () => {
    const bad = join(world.dir, 'cli-bad.yaml');
    writeFileSync(bad, `${stringify(worldRawConfig(world))}colour: blue\n`);
    const r = await run(['check-config', '-c', bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: unknown key 'colour'`));
  });

  it('check-config names a missing file', async () => {
    const r = await run(['check-config', '-c', join(world.dir, 'nope.yaml')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot read .*nope\.yaml/);
  });

  it('lookup prints what LDAP says (by uid and by mail), without any password', async () => {
    const r = await run(['lookup', 'alice', '-c', good]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(out['found'], true);
    assert.equal(out['login'], 'alice');
    assert.equal(out['host'], 'backend-a');
    assert.doesNotMatch(r.stdout, /secret|password/i);
    const byMail = JSON.parse((await run(['lookup', 'bob@example.test', '-c', good])).stdout) as Record<string, unknown>;
    assert.equal(byMail['host'], 'backend-b');
  });

  it('lookup exits 1 for an unknown user and 75 (temporary) when LDAP is down', async () => {
    const r = await run(['lookup', 'nobody', '-c', good]);
    assert.equal(r.code, 1);
    assert.equal((JSON.parse(r.stdout) as Record<string, unknown>)['found'], false);
    world.ldap.pause();
    try {
      const down = await run(['lookup', 'alice', '-c', good]);
      assert.equal(down.code, 75);
      assert.match(down.stderr, /DIRECTORY_UNAVAILABLE/);
    } finally { world.ldap.resume(); }
  });

  it('prints usage for no command and refuses an unknown one or an unknown option (exit 64, on stderr)', async () => {
    const none = await run([]);
    assert.equal(none.code, 64);
    assert.match(none.stderr, /usage: mailproxy/);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 64);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
    const option = await run(['check-config', '--colour', '-c', good]);
    assert.equal(option.code, 64);
    assert.match(option.stderr, /Unknown option '--colour'/);
  });

  it('--help and -h print the usage with every exit code and exit 0; --version and -V print the package version', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run([flag]);
      assert.equal(r.code, 0, flag);
      assert.ok(r.stdout.includes(USAGE), flag);
      assert.ok(r.stdout.includes(EXIT_CODES), flag);
    }
    assert.equal((await run(['status', '--help'])).code, 0);
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await run([flag]);
      assert.equal(r.code, 0, flag);
      assert.equal(r.stdout.trim(), `mailproxy ${pkg.version}`);
    }
  });

  it('the README documents exactly the exit codes the usage text gives', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    assert.ok(readme.includes(EXIT_CODES), `README.md must contain the EXIT_CODES block of src/cli-usage.ts verbatim:\n${EXIT_CODES}`);
    for (const code of ['0', '1', '2', '3', '64', '75', '78']) assert.match(EXIT_CODES, new RegExp(`^  ${code} +\\S`, 'm'));
  });

  it('check-config: a YAML syntax error is one line file:line:col: message (exit 78)', async () => {
    const bad = join(world.dir, 'cli-indent.yaml');
    writeFileSync(bad, 'listeners:\n  - protocol: imap\n     port: 143\ndirectory:\n  type: ldap\n');
    const r = await run(['check-config', '-c', bad]);
    assert.equal(r.code, 78);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^${esc(bad)}:2:\\d+: \\S.*[^:]$`));
  });

  it('check-config names file:line:col and the key path in every problem, secret files included (exit 78)', async () => {
    const bad = join(world.dir, 'cli-keys.yaml');
    writeFileSync(bad, stringify(worldRawConfig(world, (c) => {
      c['workers'] = 0;
      (c['imap'] as Record<string, unknown>)['limits'] = { maxLineBytes: 10 };
      c['admin'] = { enabled: true, tokenFile: 'no-such-token' };
    })));
    const r = await run(['check-config', '-c', bad]);
    assert.equal(r.code, 78);
    const lines = r.stderr.trim().split('\n');
    assert.ok(lines.some((l) => l.startsWith(`${bad}:`) && l.includes(': workers: ')), r.stderr);
    assert.ok(lines.some((l) => l.includes(': imap.limits.maxLineBytes: ')), r.stderr);
    for (const l of lines) assert.match(l, new RegExp(`^${esc(bad)}:\\d+:\\d+: [\\w.-]+: \\S`), `problem without file:line:col: key: ${l}`);
    writeFileSync(bad, stringify(worldRawConfig(world, (c) => { c['admin'] = { enabled: true, tokenFile: 'no-such-token' }; })));
    const secret = await run(['check-config', '-c', bad]);
    assert.equal(secret.code, 78);
    assert.match(secret.stderr.trim(), new RegExp(`^${esc(bad)}:\\d+:\\d+: admin\\.tokenFile: ENOENT`));
  });

  it('schema prints the JSON Schema that config/mailproxy.schema.json holds', async () => {
    const r = await run(['schema']);
    assert.equal(r.code, 0, r.stderr);
    const committed = JSON.parse(readFileSync(new URL('../../../config/mailproxy.schema.json', import.meta.url), 'utf8')) as unknown;
    assert.deepEqual(JSON.parse(r.stdout), committed, 'config/mailproxy.schema.json is stale: run npm run schema');
  });

  it('status exits 0 all up, 1 in maintenance, 2 a backend down, 3 admin API unreachable (as the README says)', async function () {
    this.timeout(240_000);
    const proxy = await startProxy(worldConfig(world, (c) => {
      c['health'] = { enabled: true, intervalMs: 200, timeoutMs: 1500, rise: 1, fall: 1 };
      c['admin'] = { enabled: true, address: '127.0.0.1', port: 0 };
      delete (c['backends'] as Record<string, unknown>)['backend-dead'];
    }));
    let stopped = false;
    try {
      const adminPort = proxy.app.admin!.port;
      const file = join(world.dir, 'cli-status.yaml');
      writeFileSync(file, stringify(worldRawConfig(world, (c) => { c['admin'] = { enabled: true, address: '127.0.0.1', port: adminPort }; })));
      const statusUntil = async (want: number) => {
        const t0 = Date.now();
        for (;;) {
          const r = await run(['status', '-c', file]);
          if (r.code === want) return r;
          if (Date.now() - t0 > 45_000) assert.fail(`status never exited ${want}; last: ${r.code} ${r.stdout}\nstderr: ${r.stderr}`);
          await new Promise((res) => setTimeout(res, 200));
        }
      };
      assert.match((await statusUntil(0)).stdout, /^MAILPROXY OK/);
      const post = (enabled: boolean) => fetch(`http://127.0.0.1:${adminPort}/backends/backend-b/maintenance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ enabled }) });
      assert.equal((await post(true)).status, 200);
      assert.match((await statusUntil(1)).stdout, /^MAILPROXY WARNING/);
      assert.equal((await post(false)).status, 200);
      await statusUntil(0);
      await world.backends.b.stop();
      assert.match((await statusUntil(2)).stdout, /^MAILPROXY CRITICAL - .*down: backend-b/);
      await proxy.stop();
      stopped = true;
      assert.match((await statusUntil(3)).stdout, /^MAILPROXY UNKNOWN - admin server .* unreachable/);
    } finally { if (!stopped) await proxy.stop(); }
  });
});

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
