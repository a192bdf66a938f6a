// Proves the one config schema and loader: defaults, strictness with file:line, cross-field rules, secrets from files, frozen result.
// Must not start anything; YAML text in, Config or ConfigError out.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../../src/config/load.js';
import { MINIMAL_YAML } from './minimal.js';
import { configSchema } from '../../../src/config/schema.js';

const MINIMAL = MINIMAL_YAML;

function problems(text: string): string[] {
  try { parseConfig(text, 'test.yaml'); } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('config schema', () => {
  it('fills every default from a minimal file', () => {
    const c = parseConfig(MINIMAL, 'test.yaml');
    assert.equal(c.imap.requireTlsForAuth, true);
    assert.equal(c.imap.limits.idleTimeoutMs, 30 * 60_000);
    assert.equal(c.imap.limits.maxLineBytes, 8192);
    assert.equal(c.directory.cache.negativeTtlMs, 10_000);
    assert.equal(c.backendLogin.mode, 'user');
    assert.equal(c.health.fall, 2);
    assert.equal(c.admin.address, '127.0.0.1');
    assert.equal(c.listeners[0]!.address, '0.0.0.0');
    assert.equal(c.workers, 1);
  });

  it('rejects unknown keys, naming the key and the line', () => {
    const p = problems(`${MINIMAL}imap:\n  limitz: {}\n`);
    assert.equal(p.length, 1);
    assert.match(p[0]!, /^test\.yaml:\d+:\d+: unknown key 'imap\.limitz'/);
    assert.match(p[0]!, /:8:3: /, 'the line and column of the key itself, not of its value');
  });

  it('rejects unknown keys inside list items and nested sections', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 143, tls: none, colour: red }\ndirectory:\n  type: static\n  static: { file: u.yaml, extra: 1 }\n`);
    assert.ok(p.some((x) => /unknown key 'listeners\.0\.colour'/.test(x) && /:2:/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /unknown key 'directory\.static\.extra'/.test(x)), p.join('\n'));
  });

  it('reports wrong types and values with the key path', () => {
    const p = problems(`listeners:\n  - { protocol: gopher, port: 99999 }\ndirectory: { type: static, static: { file: x } }\n`);
    assert.ok(p.some((x) => /listeners\.0\.protocol/.test(x)));
    assert.ok(p.some((x) => /listeners\.0\.port/.test(x)));
  });

  it('requires a TLS section for TLS listeners', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 993, tls: implicit }\ndirectory: { type: static, static: { file: x } }\n`);
    assert.ok(p.some((x) => /tls section/.test(x)), p.join('\n'));
  });

  it('refuses two listeners on one address and port, naming both (port 0 = any free port may repeat)', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 143, tls: none }\n  - { protocol: pop3, port: 143, tls: none }\ndirectory: { type: static, static: { file: x } }\n`);
    assert.ok(p.some((x) => /listeners\.1\.port.*already listeners\[0\]/.test(x)), p.join('\n'));
    parseConfig(`listeners:\n  - { protocol: imap, port: 0, tls: none }\n  - { protocol: pop3, port: 0, tls: none }\n  - { protocol: pop3, address: "::1", port: 143, tls: none }\n  - { protocol: imap, port: 143, tls: none }\ndirectory: { type: static, static: { file: x } }\n`, 'ok.yaml');
  });

  it('requires the directory section matching its type', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 143, tls: none }\ndirectory: { type: ldap }\n`);
    assert.ok(p.some((x) => /directory\.ldap/.test(x)), p.join('\n'));
  });

  it('checks backend references: standby and default backend must exist, no self-standby', () => {
    const p = problems(`${MINIMAL}routing: { defaultBackend: nowhere }\nbackends:\n  a: { host: h, standby: b }\n  c: { host: h, standby: c }\n`);
    assert.ok(p.some((x) => /standby 'b' is not a configured backend/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /own standby/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /'nowhere' is not a configured backend/.test(x)), p.join('\n'));
  });

  it('requires master credentials in master mode', () => {
    const p = problems(`${MINIMAL}backendLogin: { mode: master }\n`);
    assert.ok(p.some((x) => /masterUser/.test(x)), p.join('\n'));
  });

  it('rejects LDAP URLs that are not ldap:// or ldaps://', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 143, tls: none }\ndirectory:\n  type: ldap\n  ldap: { urls: [http://x], bindDN: a, baseDN: b }\n`);
    assert.ok(p.some((x) => /directory\.ldap\.urls\.0/.test(x)), p.join('\n'));
  });

  it('checks PROXY trusted networks at load time', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 143, tls: none, proxyProtocol: true, proxyTrustedNetworks: [10.0.0.0/8, '::1', 10.0.0.0/33, banana] }\ndirectory: { type: static, static: { file: x } }\n`);
    assert.equal(p.filter((x) => /proxyTrustedNetworks/.test(x)).length, 2, p.join('\n'));
  });

  it('refuses zero LDAP timeouts (ldapts would wait forever)', () => {
    const p = problems(`listeners:\n  - { protocol: imap, port: 143, tls: none }\ndirectory:\n  type: ldap\n  ldap: { urls: [ldap://x], bindDN: a, baseDN: b, timeoutMs: 0 }\n`);
    assert.ok(p.some((x) => /directory\.ldap\.timeoutMs/.test(x)), p.join('\n'));
  });

  it('reports invalid YAML as a ConfigError', () => {
    const p = problems('listeners: [\n');
    assert.ok(p.length > 0);
  });

  it('reads secrets from files relative to the config file and resolves paths', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpcfg-'));
    writeFileSync(join(dir, 'bind.secret'), 's3cret\n');
    writeFileSync(join(dir, 'master.secret'), 'm4ster');
    writeFileSync(join(dir, 'c.yaml'), `listeners:\n  - { protocol: imap, port: 143, tls: none }\ndirectory:\n  type: ldap\n  ldap: { urls: [ldap://127.0.0.1], bindDN: cn=x, bindPasswordFile: bind.secret, baseDN: dc=x }\nbackendLogin: { mode: master, masterUser: m, masterPasswordFile: master.secret }\n`);
    const c = loadConfig(join(dir, 'c.yaml'));
    assert.equal(c.directory.ldap!.bindPassword, 's3cret');
    assert.equal(c.backendLogin.masterPassword, 'm4ster');
  });

  it('reads a backend CA bundle from tlsCaFile into tlsCa', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpcfg-'));
    writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'c.yaml'), `${MINIMAL}backends:\n  a: { host: h, tlsCaFile: ca.pem }\n`);
    assert.match(loadConfig(join(dir, 'c.yaml')).backends['a']!.tlsCa!, /BEGIN CERTIFICATE/);
  });

  it('reads the LDAP CA bundle from directory.ldap.tlsCaFile; startTls defaults to off', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpcfg-'));
    writeFileSync(join(dir, 'ldap-ca.pem'), '-----BEGIN CERTIFICATE-----\nxyz\n-----END CERTIFICATE-----\n');
    const ldap = (extra: string) => `listeners: [{ protocol: imap, port: 143, tls: none }]\ndirectory:\n  type: ldap\n  ldap: { urls: [ldap://l], bindDN: cn=x, baseDN: dc=x${extra} }\n`;
    writeFileSync(join(dir, 'c.yaml'), ldap(', startTls: true, tlsCaFile: ldap-ca.pem'));
    const c = loadConfig(join(dir, 'c.yaml')).directory.ldap!;
    assert.deepEqual([c.startTls, /xyz/.test(c.tlsCa!)], [true, true]);
    writeFileSync(join(dir, 'd.yaml'), ldap(''));
    assert.equal(loadConfig(join(dir, 'd.yaml')).directory.ldap!.startTls, false);
    writeFileSync(join(dir, 'e.yaml'), ldap(', tlsCaFile: missing.pem'));
    assert.throws(() => loadConfig(join(dir, 'e.yaml')), (e: unknown) => e instanceof ConfigError && /directory\.ldap\.tlsCaFile/.test(e.problems.join()));
  });

  it('a resolved config holds each secret once (the file read into the value) and validates again as it is', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpcfg-'));
    writeFileSync(join(dir, 'bind.secret'), 's3cret\n');
    writeFileSync(join(dir, 'redis.pass'), 'r3dis\n');
    writeFileSync(join(dir, 'c.yaml'), `listeners: [{ protocol: imap, port: 143, tls: none }]\ndirectory:\n  type: ldap\n  ldap: { urls: [ldap://l], bindDN: cn=x, bindPasswordFile: bind.secret, baseDN: dc=x }\ntier:\n  redis: { host: 127.0.0.1, passwordFile: redis.pass }\n`);
    const c = loadConfig(join(dir, 'c.yaml'));
    assert.deepEqual([c.directory.ldap!.bindPassword, c.directory.ldap!.bindPasswordFile, c.tier!.redis.password, c.tier!.redis.passwordFile], ['s3cret', undefined, 'r3dis', undefined]);
    const again = configSchema.parse(structuredClone(c));
    assert.equal(again.tier!.redis.password, 'r3dis');
  });

  it('names a missing secret file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpcfg-'));
    writeFileSync(join(dir, 'c.yaml'), `${MINIMAL}admin: { tokenFile: nope.token }\n`);
    assert.throws(() => loadConfig(join(dir, 'c.yaml')), (e: unknown) => e instanceof ConfigError && /admin\.tokenFile/.test(e.problems.join()));
  });

  it('refuses tier timings that make a live instance count as gone, or a pool sweep that hammers Redis', () => {
    const tier = (extra: string) => `${MINIMAL}tier:\n  redis: { host: 127.0.0.1 }\n${extra}`;
    const ttl = problems(tier('  heartbeatMs: 5000\n  instanceTtlMs: 1000\n'));
    assert.ok(ttl.some((p) => /tier\.instanceTtlMs: must be at least twice tier\.heartbeatMs/.test(p)), ttl.join('\n'));
    assert.ok(problems(tier('  heartbeatMs: 3000\n')).some((p) => /instanceTtlMs/.test(p)), 'the default instanceTtlMs (5000) with a 3 s heartbeat');
    const sweep = problems(tier('  poolSweep: { intervalMs: 1 }\n'));
    assert.ok(sweep.some((p) => /tier\.poolSweep\.intervalMs: 0 \(no sweep\) or at least 100 ms/.test(p)), sweep.join('\n'));
    for (const ok of ['  heartbeatMs: 300\n  instanceTtlMs: 600\n', '  poolSweep: { intervalMs: 0 }\n', '']) assert.ok(parseConfig(tier(ok), 'test.yaml').tier);
  });

  it('returns a deeply frozen config', () => {
    const c = parseConfig(MINIMAL, 'test.yaml');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.imap.limits) && Object.isFrozen(c.listeners[0]));
  });

  it('accepts config/example.yaml, which documents every key', () => {
    const text = readFileSync(new URL('../../../../config/example.yaml', import.meta.url), 'utf8');
    const c = parseConfig(text, 'config/example.yaml');
    assert.equal(c.listeners.length, 7);
    assert.equal(c.backends['backend-a']!.standby, 'backend-a-standby');
  });
});
