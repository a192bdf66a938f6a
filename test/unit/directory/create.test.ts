// Proves createDirectory picks LDAP or the static file from config and wraps it in the cache when enabled.
// Must not open connections.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseConfig } from '../../../src/config/load.js';
import { CachedDirectory } from '../../../src/directory/cached.js';
import { createDirectory } from '../../../src/directory/create.js';
import { LdapDirectory } from '../../../src/directory/ldap.js';
import { StaticDirectory } from '../../../src/directory/static.js';
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
