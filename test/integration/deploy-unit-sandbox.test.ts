// Proves the shipped systemd unit's sandbox lets the proxy run: under the unit's SystemCallFilter and
// RestrictAddressFamilies (loaded as seccomp filters, without systemd), `start` with two workers logs users in to real
// Dovecot through slapd, reloads on SIGHUP and drains to exit 0 on SIGTERM. Must not check the rest of the unit (deploy-files does).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorld, type World } from './harness/world.js';
import { LineClient } from './harness/line-client.js';
import { unitSandboxPrefix } from './harness/unit-sandbox.js';
import { worldRawConfig } from './proxy-fixture.js';
import { startChildProxy, type ChildProxy } from './child-proxy.js';

const UNIT = new URL('../../../deploy/systemd/mailproxy.service', import.meta.url).pathname;

describe('deploy/systemd/mailproxy.service: the proxy under the unit\'s seccomp sandbox', function () {
  this.timeout(90_000);
  let world: World;
  let dir: string;
  let proxy: ChildProxy | undefined;

  before(async () => {
    world = await startWorld();
    dir = mkdtempSync(join(tmpdir(), 'mailproxy-unit-sandbox-'));
  });
  after(async () => {
    await proxy?.stop();
    await world?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts with two workers, logs users in to Dovecot, reloads on SIGHUP, drains and exits 0 on SIGTERM', async () => {
    // Before the unit allowed AF_NETLINK, `start` died at once: "uv_interface_addresses returned Unknown system error 97"
    // (the loop guard reads this host's interface addresses, and getifaddrs() needs a netlink socket).
    const raw = worldRawConfig(world, (c) => {
      c['workers'] = 2;
      c['log'] = { level: 'info' };
      c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls' }];
      c['shutdown'] = { drainDeadlineMs: 1000 };
    });
    proxy = await startChildProxy(world, raw, { name: 'sandboxed', wrap: unitSandboxPrefix(readFileSync(UNIT, 'utf8'), dir), timeoutMs: 30_000 });
    const port = proxy.port('imap', 'starttls');
    for (const user of ['alice', 'bob', 'alice', 'bob'] as const) {
      const u = world.users[user];
      const c = await LineClient.connect(port);
      try {
        await c.readLine();
        assert.match(await c.command('a', `LOGIN ${u.uid} ${u.password}`), /^a OK/m);
        assert.match(await c.command('b', 'SELECT INBOX'), /^b OK/m);
        await c.command('z', 'LOGOUT');
      } finally { c.close(); }
    }
    const mark = proxy.logs.length;
    proxy.signal('SIGHUP');
    await proxy.waitForLog((l) => l.msg === 'configuration reloaded', 10_000, mark);
    proxy.signal('SIGTERM');
    const exit = await proxy.exited;
    assert.equal(exit.code, 0, proxy.otherOutput());
    assert.doesNotMatch(proxy.otherOutput(), /system error|EPERM|EAFNOSUPPORT/);
  });

  it('the sandbox is real: without AF_NETLINK in RestrictAddressFamilies, os.networkInterfaces() fails (the check can fail)', async () => {
    const unit = readFileSync(UNIT, 'utf8').replace(/^RestrictAddressFamilies=.*$/m, 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX');
    const command = [...unitSandboxPrefix(unit, dir), process.execPath, '-e', 'require("node:os").networkInterfaces()'];
    const out = await new Promise<{ code: number; text: string }>((resolve) => {
      execFile(command[0]!, command.slice(1), { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, text: `${stdout}${stderr}` }));
    });
    assert.notEqual(out.code, 0, out.text);
    assert.match(out.text, /uv_interface_addresses/);
  });

  it('a stricter sandbox without AF_NETLINK: the proxy still starts and serves, and says why loop protection knows loopback only', async () => {
    const unit = readFileSync(UNIT, 'utf8').replace(/^RestrictAddressFamilies=.*$/m, 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX');
    const raw = worldRawConfig(world, (c) => {
      c['log'] = { level: 'info' };
      c['listeners'] = [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls' }];
      c['shutdown'] = { drainDeadlineMs: 1000 };
    });
    const strict = await startChildProxy(world, raw, { name: 'no-netlink', wrap: unitSandboxPrefix(unit, dir), timeoutMs: 30_000 });
    try {
      const warning = strict.logs.find((l) => l['event'] === 'interfaces_unreadable');
      assert.ok(warning, 'no interfaces_unreadable warning');
      assert.match(String(warning['msg']), /loopProtection\.selfAddresses/);
      const u = world.users.alice;
      const c = await LineClient.connect(strict.port('imap', 'starttls'));
      try {
        await c.readLine();
        assert.match(await c.command('a', `LOGIN ${u.uid} ${u.password}`), /^a OK/m);
        await c.command('z', 'LOGOUT');
      } finally { c.close(); }
    } finally { await strict.stop(); }
  });
});
