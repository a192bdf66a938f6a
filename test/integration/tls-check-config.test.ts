// Proves TLS file checks as operators meet them: check-config/start name the key and file of each bad certificate (exit 78), warn before expiry.
// Must not start a proxy that serves (tls-sni-alpn.test.ts does).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { requireBinaries } from './harness/binaries.js';
import { generateNamedCert } from './harness/tls-cert.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('TLS file checks (check-config and start)', function () {
  this.timeout(60_000);
  const openssl = requireBinaries().get('openssl')!;
  let dir: string;
  type Pair = { certPath: string; keyPath: string };
  let good: Pair; let other: Pair; let expired: Pair; let soon: Pair;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mp-tlscheck-'));
    [good, other, expired, soon] = await Promise.all([
      generateNamedCert(openssl, dir, 'good', 'good.example.com', { days: 90 }),
      generateNamedCert(openssl, dir, 'other', 'other.example.com', { days: 90 }),
      generateNamedCert(openssl, dir, 'expired', 'expired.example.com', { days: -1 }),
      generateNamedCert(openssl, dir, 'soon', 'soon.example.com', { days: 5 }),
    ]);
    writeFileSync(join(dir, 'users.yaml'), 'users: []\n');
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  const write = (name: string, sni: Array<{ names: string[]; certFile: string; keyFile: string }>): string => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, stringify({
      tls: { certFile: good.certPath, keyFile: good.keyPath, sni },
      listeners: [{ protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit' }],
      directory: { type: 'static', static: { file: 'users.yaml' } },
      admin: { enabled: false }, health: { enabled: false },
    }));
    return file;
  };
  const entry = (names: string[], p: Pair) => ({ names, certFile: p.certPath, keyFile: p.keyPath });

  it('accepts valid default and SNI pairs', async () => {
    const r = await run(['check-config', '-c', write('ok', [entry(['a.example.com'], other), entry(['*.example.org'], good)])]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /OK/);
    assert.equal(r.stderr, '');
  });

  it('names the config key and path of a missing key file, and every other problem in the same run', async () => {
    const missing = join(dir, 'missing.key');
    const r = await run(['check-config', '-c', write('missing', [entry(['a.example.com'], other), { names: ['b.example.com'], certFile: other.certPath, keyFile: missing }, entry(['c.example.com'], expired)])]);
    assert.equal(r.code, 78, r.stdout);
    assert.ok(r.stderr.includes(`error: tls.sni[1].keyFile: ENOENT ${missing}`), r.stderr);
    assert.match(r.stderr, /error: tls\.sni\[2\]\.certFile: certificate expired .*expired\.crt/);
    assert.doesNotMatch(r.stdout, /OK/);
  });

  it('refuses a key that does not belong to the certificate', async () => {
    const r = await run(['check-config', '-c', write('mismatch', [{ names: ['a.example.com'], certFile: other.certPath, keyFile: good.keyPath }])]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /error: tls\.sni\[0\]\.keyFile: key does not match the certificate in tls\.sni\[0\]\.certFile/);
  });

  it('warns (exit 0) when a certificate expires within expiryWarningDays', async () => {
    const r = await run(['check-config', '-c', write('soon', [entry(['soon.example.com'], soon)])]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: tls\.sni\[0\]\.certFile: certificate expires in [45] days/);
  });

  it('start refuses the same problems before binding anything (exit 78)', async () => {
    const r = await run(['start', '-c', write('start-expired', [entry(['x.example.com'], expired)])]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /tls\.sni\[0\]\.certFile: certificate expired/);
  });
});
