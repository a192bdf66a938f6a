// Proves scripts/ensure-packages.sh sees the installed test world as complete (`--check`: report only, no apt, no
// services touched), so `npm run demo` and `npm test` do not re-run apt-get on every start or refuse a non-root user.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';

const ROOT = new URL('../../../', import.meta.url).pathname;

describe('ensure-packages.sh --check', () => {
  it('reports every package present on a machine where pretest installed them (the Sieve plugin .so is not executable)', async () => {
    const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile('bash', [join(ROOT, 'scripts/ensure-packages.sh'), '--check'], { timeout: 30_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
      });
    });
    assert.equal(code, 0, out);
    assert.match(out, /all integration test packages present/);
    assert.doesNotMatch(out, /missing/);
  });
});
