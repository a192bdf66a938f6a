// Proves the command line as an operator uses it: check-config (valid, invalid with file:line), lookup against real LDAP, usage errors.
// Must not start the proxy (lifecycle tests do) or test the directory's internals (directory tests do).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startWorld, type World } from './harness/world.js';
import { worldRawConfig } from './proxy-fixture.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
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

  it('prints usage for no command and refuses an unknown one', async () => {
    const none = await run([]);
    assert.equal(none.code, 64);
    assert.match(none.stdout, /usage: mailproxy/);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 64);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  });
});
