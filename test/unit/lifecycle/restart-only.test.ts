// Proves the SIGHUP rule for what a running process cannot apply: workers (resolved), admin and tier changes are named in
// one warning; everything else reloads silently. Must not start anything.
import assert from 'node:assert/strict';
import { parseConfig } from '../../../src/config/load.js';
import { restartOnlyChanges } from '../../../src/lifecycle.js';
import type { Logger } from '../../../src/log.js';
import { MINIMAL_YAML } from '../config/minimal.js';

const BASE = MINIMAL_YAML;

function recorder(): { logger: Logger; warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  const logger = { warn: (o: Record<string, unknown>) => { warnings.push(o); } } as unknown as Logger;
  return { logger, warnings };
}

describe('reload: changes that need a restart', () => {
  it('names workers, admin and tier when they change, in one warning', () => {
    const prev = parseConfig(BASE, 'a.yaml');
    const next = parseConfig(`${BASE}workers: 3\nadmin: { port: 9999 }\ntier: { redis: { host: 127.0.0.1, port: 6390 } }\n`, 'b.yaml');
    const { logger, warnings } = recorder();
    assert.deepEqual(restartOnlyChanges(prev, next, logger), ['workers', 'admin', 'tier']);
    assert.equal(warnings.length, 1);
    assert.deepEqual(warnings[0]!['keys'], ['workers', 'admin', 'tier']);
  });

  it('says nothing when only reloadable keys change (listeners, log level)', () => {
    const prev = parseConfig(BASE, 'a.yaml');
    const next = parseConfig(BASE.replace('port: 143', 'port: 1143') + 'log: { level: debug }\n', 'b.yaml');
    const { logger, warnings } = recorder();
    assert.deepEqual(restartOnlyChanges(prev, next, logger), []);
    assert.equal(warnings.length, 0);
  });
});
