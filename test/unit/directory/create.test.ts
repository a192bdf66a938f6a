// Proves createDirectory picks LDAP or the static file from config and wraps it in the cache when enabled.
// Must not open connections.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProxyError } from '../../../src/errors.js';
import { parseConfig } from '../../../src/config/load.js';
import { CachedDirectory } from '../../../src/directory/cached.js';
import { createDirectory } from '../../../src/directory/create.js';
import { LdapDirectory } from '../../../src/directory/ldap.js';
import { StaticDirectory } from '../../../src/directory/static.js';
import { sameDirectorySettings } from '../../../src/server.js';
import { silentLogger } from '../../../src/log.js';

const FIXTURE = join(process.cwd(), 'test/fixtures/static-users.yaml');

function config(directory: string) {
  return parseConfig(`listeners: [{protocol: imap, port: 0, tls: none}]\ndirectory:\n${directory}`, '/tmp/mailproxy-test.yaml');
}

describe('createDirectory', () => {
  it('static directory behind the cache by default', async () => {
    const d = createDirectory(config(`  type: static\n  static: {file: ${FIXTURE}}\n`), silentLogger);
    assert.ok(d instanceof CachedDirectory);
    assert.equal((await d.authenticate({ user: 'bob', password: 'bob-secret', mechanism: 'PLAIN' })).ok, true);
    await d.close();
  });

  it('reload re-reads the users file and drops what the cache held from the old one; a malformed file keeps the old users', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailproxy-static-'));
    const file = join(dir, 'users.yaml');
    const original = readFileSync(FIXTURE, 'utf8');
    writeFileSync(file, original);
    const d = createDirectory(config(`  type: static\n  static: {file: ${file}}\n`), silentLogger);
    try {
      const bob = { user: 'bob', password: 'bob-secret', mechanism: 'PLAIN' } as const;
      assert.equal((await d.authenticate(bob)).ok, true, 'bob verified, and his verdict cached');
      assert.equal((await d.lookupRecipient('bob@example.test'))?.login, 'bob');
      writeFileSync(file, original.replace(/\n  bob:[\s\S]*?(?=\n  # No host)/, ''));
      await d.reload?.();
      assert.equal((await d.authenticate(bob)).ok, false, 'bob removed from the file: refused at once, not after ttlMs');
      assert.equal(await d.lookupRecipient('bob@example.test'), null);
      writeFileSync(file, 'users:\n  alice: {password: nohash}\n');
      await assert.rejects(d.reload!(), (e) => e instanceof ProxyError && e.code === 'CONFIG_INVALID');
      assert.equal((await d.authenticate({ user: 'alice', password: 'alice-secret', mechanism: 'PLAIN' })).ok, true, 'the last good file stays in effect');
    } finally {
      await d.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a reload keeps the directory only when the directory and oauth sections are unchanged (a rotated bind password is a change)', () => {
    const ldap = (pw: string) => config(`  type: ldap\n  ldap: {urls: ["ldap://127.0.0.1:1"], bindDN: "cn=x", bindPassword: ${pw}, baseDN: "dc=x"}\n`);
    assert.equal(sameDirectorySettings(ldap('y'), structuredClone(ldap('y'))), true);
    assert.equal(sameDirectorySettings(ldap('y'), ldap('rotated')), false);
    assert.equal(sameDirectorySettings(ldap('y'), config(`  type: static\n  static: {file: ${FIXTURE}}\n`)), false);
  });

  it('cache disabled gives the bare directory', () => {
    const d = createDirectory(config(`  type: static\n  static: {file: ${FIXTURE}}\n  cache: {enabled: false}\n`), silentLogger);
    assert.ok(d instanceof StaticDirectory);
  });

  it('ldap directory is built without connecting', async () => {
    const d = createDirectory(config('  type: ldap\n  ldap: {urls: ["ldap://127.0.0.1:1"], bindDN: "cn=x", bindPassword: y, baseDN: "dc=x"}\n  cache: {enabled: false}\n'), silentLogger);
    assert.ok(d instanceof LdapDirectory);
    await d.close();
  });
});
