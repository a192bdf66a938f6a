// Proves the static file directory: lookups by name and address, hashes, reload, equal time for unknown users.
// Must not talk to LDAP.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashPassword } from '../../../src/directory/password-hash.js';
import { StaticDirectory } from '../../../src/directory/static.js';
import { isProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

const creds = (user: string, password: string) => ({ user, password, mechanism: 'LOGIN' as const });
const FIXTURE = join(process.cwd(), 'test/fixtures/static-users.yaml');
const configInvalid = (e: unknown) => isProxyError(e) && e.code === 'CONFIG_INVALID';

describe('StaticDirectory', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mailproxy-static-'));
    file = join(dir, 'users.yaml');
    writeFileSync(file, [
      'users:',
      '  alice:',
      `    password: '${await hashPassword('SSHA512', 'alice-pw')}'`,
      '    host: backend-a',
      '    mail: alice@example.test',
      '    aliases: [Postmaster@Example.Test]',
      '  carol:',
      `    password: '${await hashPassword('SSHA', 'carol-pw')}'`,
      '',
    ].join('\n'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('authenticates by login name and by address', async () => {
    const d = new StaticDirectory(file, silentLogger);
    assert.deepEqual(await d.authenticate(creds('alice', 'alice-pw')), { ok: true, account: { login: 'alice', host: 'backend-a', mail: 'alice@example.test' } });
    const byMail = await d.authenticate(creds('alice@EXAMPLE.test', 'alice-pw'));
    assert.ok(byMail.ok && byMail.account.login === 'alice');
  });

  it('wrong password, unknown user and empty password are { ok: false }', async () => {
    const d = new StaticDirectory(file, silentLogger);
    assert.deepEqual(await d.authenticate(creds('alice', 'wrong')), { ok: false });
    assert.deepEqual(await d.authenticate(creds('mallory', 'alice-pw')), { ok: false });
    assert.deepEqual(await d.authenticate(creds('alice', '')), { ok: false });
    assert.deepEqual(await d.authenticate(creds('ali\nce', 'alice-pw')), { ok: false });
  });

  it('login names are exact; address domains are case-insensitive, local parts are not', async () => {
    const d = new StaticDirectory(file, silentLogger);
    assert.equal(await d.lookup('Alice'), null);
    assert.equal((await d.lookup('alice@Example.TEST'))?.login, 'alice');
    assert.equal(await d.lookup('Alice@example.test'), null);
    assert.equal((await d.lookupRecipient('postmaster@example.test')), null);
    assert.equal((await d.lookupRecipient('Postmaster@example.test'))?.login, 'alice');
    assert.equal((await d.lookupRecipient('alice@example.test'))?.host, 'backend-a');
    assert.equal(await d.lookupRecipient('alice'), null, 'a bare login name is not a recipient address');
  });

  it('an account without host has host null and no mail', async () => {
    const d = new StaticDirectory(file, silentLogger);
    assert.deepEqual(await d.lookup('carol'), { login: 'carol', host: null });
  });

  it('an unknown user costs a hash verification like a known one', async () => {
    writeFileSync(file, `users:\n  slow:\n    password: '${await hashPassword('BLF-CRYPT', 'x', { bcryptCost: 8 })}'\n`);
    const d = new StaticDirectory(file, silentLogger);
    const time = async (user: string) => { const t = process.hrtime.bigint(); await d.authenticate(creds(user, 'guess')); return Number(process.hrtime.bigint() - t) / 1e6; };
    await time('slow');
    const known = Math.min(await time('slow'), await time('slow'));
    const unknown = Math.min(await time('nobody'), await time('nobody'));
    assert.ok(unknown > known / 3, `unknown ${unknown.toFixed(1)} ms vs known ${known.toFixed(1)} ms`);
  });

  it('reload() picks up changes; a broken file keeps the old users and throws', async () => {
    const d = new StaticDirectory(file, silentLogger);
    writeFileSync(file, `users:\n  dave:\n    password: '{PLAIN}dave-pw'\n    host: backend-b\n`);
    await d.reload();
    assert.equal(await d.lookup('alice'), null);
    assert.equal((await d.authenticate(creds('dave', 'dave-pw'))).ok, true);
    writeFileSync(file, 'users:\n  dave: {password: nohash}\n');
    await assert.rejects(d.reload(), configInvalid);
    assert.equal((await d.lookup('dave'))?.host, 'backend-b');
  });

  it('validates strictly: unknown keys, bad hashes, duplicate addresses, missing file', () => {
    const bad = [
      'users:\n  a: {password: "{PLAIN}x", colour: blue}\n',
      'users:\n  a: {password: "{MD5}x"}\n',
      'users:\n  a: {password: "{PLAIN}x", mail: not-an-address}\n',
      'users:\n  a: {password: "{PLAIN}x", mail: a@x.test}\n  b: {password: "{PLAIN}y", aliases: [A@X.TEST, a@X.test]}\n',
      'groups: {}\n',
      'users: [\n',
    ];
    for (const text of bad) {
      writeFileSync(file, text);
      assert.throws(() => new StaticDirectory(file, silentLogger), configInvalid, text);
    }
    assert.throws(() => new StaticDirectory(join(dir, 'missing.yaml'), silentLogger), configInvalid);
  });

  it('the shipped fixture file loads and its passwords verify', async () => {
    const d = new StaticDirectory(FIXTURE, silentLogger);
    for (const [user, host] of [['alice', 'backend-a'], ['bob', 'backend-b'], ['carol', null], ['erin', 'backend-a']] as const) {
      const r = await d.authenticate(creds(user, `${user}-secret`));
      assert.ok(r.ok, user);
      assert.equal(r.account.host, host);
    }
    assert.equal((await d.lookupRecipient('alice.liddell@example.test')), null);
    assert.equal((await d.lookupRecipient('Alice.Liddell@example.test'))?.login, 'alice');
  });
});
