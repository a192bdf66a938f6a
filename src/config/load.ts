// Owns turning a YAML file (+ *File secrets) into a validated, frozen Config with errors that name the key and line.
// Must not start anything or keep state; callers decide what to do with a ConfigError.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(message: string, readonly problems: string[]) { super(message); this.name = 'ConfigError'; }
}

/** Parse and validate YAML text; `file` is used in messages and to resolve relative paths. */
export function parseConfig(text: string, file = '<config>'): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length) {
    const problems = doc.errors.map((e) => `${file}: ${e.message.split('\n')[0]}`);
    throw new ConfigError(`invalid YAML in ${file}`, problems);
  }
  const raw = doc.toJS() ?? {};
  const where = (path: PropertyKey[]): string => {
    const node = doc.getIn(path as unknown[], true);
    const range = isNode(node) ? node.range : undefined;
    if (!range) return file;
    const { line, col } = lineCounter.linePos(range[0]);
    return `${file}:${line}:${col}`;
  };
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => `${where([...issue.path, k])}: unknown key '${[...issue.path, k].join('.')}'`).join('\n');
      }
      const key = issue.path.join('.') || '(top level)';
      return `${where(issue.path)}: ${key}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration in ${file}`, problems);
  }
  return resolveSecrets(result.data, dirname(resolve(file)));
}

export function loadConfig(file: string): Config {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) {
    throw new ConfigError(`cannot read ${file}`, [`${file}: ${(e as Error).message}`]);
  }
  return parseConfig(text, file);
}

function readSecret(baseDir: string, file: string, key: string): string {
  try { return readFileSync(resolve(baseDir, file), 'utf8').replace(/\r?\n$/, ''); } catch (e) {
    throw new ConfigError(`cannot read secret file for ${key}`, [`${key}: ${(e as Error).message}`]);
  }
}

function resolveSecrets(c: Config, baseDir: string): Config {
  const abs = (p: string) => resolve(baseDir, p);
  const out: Config = structuredClone(c);
  if (out.tls) {
    out.tls.certFile = abs(out.tls.certFile); out.tls.keyFile = abs(out.tls.keyFile);
    for (const s of out.tls.sni) { s.certFile = abs(s.certFile); s.keyFile = abs(s.keyFile); }
  }
  const ldap = out.directory.ldap;
  if (ldap?.bindPasswordFile) ldap.bindPassword = readSecret(baseDir, ldap.bindPasswordFile, 'directory.ldap.bindPasswordFile');
  if (ldap?.tlsCaFile) ldap.tlsCa = readSecret(baseDir, ldap.tlsCaFile, 'directory.ldap.tlsCaFile');
  if (out.directory.static) out.directory.static.file = abs(out.directory.static.file);
  const bl = out.backendLogin;
  if (bl.masterPasswordFile) bl.masterPassword = readSecret(baseDir, bl.masterPasswordFile, 'backendLogin.masterPasswordFile');
  const dp = out.health.deepProbe;
  if (dp?.passwordFile) dp.password = readSecret(baseDir, dp.passwordFile, 'health.deepProbe.passwordFile');
  for (const [name, b] of Object.entries(out.backends)) {
    if (b.tlsCaFile) b.tlsCa = readSecret(baseDir, b.tlsCaFile, `backends.${name}.tlsCaFile`);
  }
  const oauth = out.oauth;
  if (oauth?.tlsCaFile) oauth.tlsCa = readSecret(baseDir, oauth.tlsCaFile, 'oauth.tlsCaFile');
  if (oauth?.introspection?.clientSecretFile) oauth.introspection.clientSecret = readSecret(baseDir, oauth.introspection.clientSecretFile, 'oauth.introspection.clientSecretFile');
  if (oauth?.jwt?.jwksFile) oauth.jwt.jwksFile = abs(oauth.jwt.jwksFile);
  if (out.admin.tokenFile) out.admin.token = readSecret(baseDir, out.admin.tokenFile, 'admin.tokenFile');
  const redis = out.tier?.redis;
  if (redis?.passwordFile) redis.password = readSecret(baseDir, redis.passwordFile, 'tier.redis.passwordFile');
  if (redis?.sentinel?.passwordFile) redis.sentinel.password = readSecret(baseDir, redis.sentinel.passwordFile, 'tier.redis.sentinel.passwordFile');
  if (redis?.tls?.caFile) redis.tls.ca = readSecret(baseDir, redis.tls.caFile, 'tier.redis.tls.caFile');
  return deepFreeze(out);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
