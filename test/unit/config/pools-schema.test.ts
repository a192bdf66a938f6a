// Proves the pools section of the config schema: member forms and defaults, and every cross-reference rule with its message.
// Must not start anything; YAML text in, Config or ConfigError out.
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { poolSpec } from '../../../src/directory/pool-route.js';
import { MINIMAL_YAML } from './minimal.js';

const BASE = `${MINIMAL_YAML}backends:
  be1: { host: 10.0.0.1 }
  be2: { host: 10.0.0.2 }
  be3: { host: 10.0.0.3 }
  solo: { host: 10.0.0.9, standby: be1 }
`;

function problems(text: string): string[] {
  try { parseConfig(text, 'test.yaml'); } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('config schema: pools', () => {
  it('accepts names and { backend, weight } members, fills defaults, and lets routing.defaultBackend name a pool', () => {
    const c = parseConfig(`${BASE}pools:\n  store1:\n    members: [be1, { backend: be2, weight: 2 }, { backend: be3 }]\nrouting: { defaultBackend: store1 }\n`, 'test.yaml');
    assert.equal(c.pools['store1']!.moveBackAfterMs, 300_000);
    assert.equal(c.pools['store1']!.drainWindowMs, 60_000);
    assert.deepEqual(poolSpec(c, 'store1'), {
      name: 'store1',
      members: [{ name: 'be1', weight: 1 }, { name: 'be2', weight: 2 }, { name: 'be3', weight: 1 }],
      moveBackAfterMs: 300_000,
      drainWindowMs: 60_000,
    });
    assert.equal(poolSpec(c, 'be1'), undefined);
    assert.deepEqual(parseConfig(BASE, 'test.yaml').pools, {});
  });

  it('refuses an unknown member, naming it and its place', () => {
    const p = problems(`${BASE}pools:\n  store1: { members: [be1, nowhere] }\n`);
    assert.ok(p.some((x) => /pools\.store1\.members\.1/.test(x) && /'nowhere' is not a configured backend/.test(x)), p.join('\n'));
  });

  it('refuses an empty pool', () => {
    const p = problems(`${BASE}pools:\n  store1: { members: [] }\n`);
    assert.ok(p.some((x) => /pools\.store1\.members/.test(x) && /at least one member/.test(x)), p.join('\n'));
  });

  it('refuses a pool named like a backend', () => {
    const p = problems(`${BASE}pools:\n  be1: { members: [be2, be3] }\n`);
    assert.ok(p.some((x) => /'be1' is both a backend and a pool/.test(x)), p.join('\n'));
  });

  it('refuses a member listed twice, a member with a standby, a bad weight and a pool name that is no host value', () => {
    const p = problems(`${BASE}pools:\n  store1: { members: [be1, be1, solo, { backend: be2, weight: 0 }] }\n  "bad name": { members: [be3] }\n`);
    assert.ok(p.some((x) => /'be1' is listed twice/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /'solo' has a standby/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /pools\.store1\.members\.3/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /valid host attribute value/.test(x)), p.join('\n'));
  });

  it('refuses unknown keys in a pool', () => {
    const p = problems(`${BASE}pools:\n  store1: { members: [be1], sticky: true }\n`);
    assert.ok(p.some((x) => /unknown key 'pools\.store1\.sticky'/.test(x)), p.join('\n'));
  });

  it('still refuses a default backend that is neither a backend nor a pool', () => {
    const p = problems(`${BASE}routing: { defaultBackend: nowhere }\n`);
    assert.ok(p.some((x) => /'nowhere' is not a configured backend or pool/.test(x)), p.join('\n'));
  });
});
