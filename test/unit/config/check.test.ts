// Proves check-config's plumbing: schema problems and YAML syntax errors become single lines naming file:line:col and
// the key; checks registered after validation get the config and positions of keys. Files only, no sockets.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkConfigFile, type ConfigCheck } from '../../../src/config/check.js';

describe('check-config (checkConfigFile)', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'mailproxy-check-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => { const f = join(dir, name); writeFileSync(f, text); return f; };
  const GOOD = 'listeners:\n  - { protocol: imap, port: 143, tls: none }\ndirectory:\n  type: static\n  static: { file: users.yaml }\n';

  it('a YAML indentation error is one problem line file:line:col: message', async () => {
    const f = write('indent.yaml', 'listeners:\n  - protocol: imap\n     port: 143\n  - protocol: pop3\n   port: 110\ndirectory: {type: ldap\n');
    const r = await checkConfigFile(f, []);
    assert.equal(r.problems.length, 1, r.problems.join('\n'));
    assert.match(r.problems[0]!, new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2:\\d+: [A-Z].*[^:]$`));
    assert.equal(r.config, undefined);
  });

  it('a value of the wrong kind for a choice key says what it takes, not "Invalid input"', async () => {
    const f = write('workers.yaml', `${GOOD}workers: many\n`);
    assert.deepEqual((await checkConfigFile(f, [])).problems.sort(), [`${f}:6:10: workers: must be "auto" or a whole number of workers, 1 or more`]);
  });

  it('runs each extra check with the validated config and key positions, and collects their problems', async () => {
    const f = write('good.yaml', GOOD);
    const seen: string[] = [];
    const check: ConfigCheck = (c, ctx) => {
      seen.push(c.listeners[0]!.protocol);
      return [`${ctx.where(['directory', 'static', 'file'])}: directory.static.file: pretend it is unreadable`];
    };
    const r = await checkConfigFile(f, [check, async () => []]);
    assert.deepEqual(seen, ['imap']);
    assert.deepEqual(r.problems, [`${f}:5:19: directory.static.file: pretend it is unreadable`]);
    assert.equal((await checkConfigFile(f, [])).problems.length, 0);
  });

  it('positions fall back to the nearest parent when a key is absent from the file', async () => {
    const f = write('parent.yaml', GOOD);
    let at = '';
    await checkConfigFile(f, [(_c, ctx) => { at = ctx.where(['directory', 'cache', 'ttlMs']); return []; }]);
    assert.equal(at, `${f}:4:3`);
  });

  it('schema problems name the key; a missing secret file names its key and line', async () => {
    const f = write('keys.yaml', `${GOOD}workers: 0\nadmin: { tokenFile: missing-token }\n`);
    const r = await checkConfigFile(f, []);
    assert.match(r.problems.join('\n'), /:6:10: workers: /);
    const s = await checkConfigFile(write('secret.yaml', `${GOOD}admin: { tokenFile: missing-token }\n`), []);
    assert.match(s.problems[0]!, /secret\.yaml:6:21: admin\.tokenFile: ENOENT/);
  });

  it('a secret given both inline and as a file is one problem per pair at the file key, whichever pair it is', async () => {
    const f = write('both.yaml', `${GOOD}admin: { token: inline, tokenFile: token.txt }\ntier:\n  redis:\n    host: 127.0.0.1\n    password: inline\n    passwordFile: redis.pass\nbackends:\n  b.one: { host: h, tlsCa: pem, tlsCaFile: ca.pem }\n`);
    writeFileSync(join(dir, 'token.txt'), 'from-file');
    assert.deepEqual((await checkConfigFile(f, [])).problems.sort(), [
      `${f}:6:36: admin.tokenFile: give token or tokenFile, not both`,
      `${f}:11:19: tier.redis.passwordFile: give password or passwordFile, not both`,
      `${f}:13:44: backends.b.one.tlsCaFile: give tlsCa or tlsCaFile, not both`,
    ].sort());
  });
});
