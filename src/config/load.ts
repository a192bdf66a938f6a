// Owns turning a YAML file (+ *File secrets) into a validated, frozen Config with errors that name the key and line.
// Must not start anything or keep state; callers decide what to do with a ConfigError.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar } from 'yaml';
import { configSchema, type Config } from './schema.js';
import { secretFileHolders } from './secret-files.js';

export class ConfigError extends Error {
  constructor(message: string, readonly problems: string[]) { super(message); this.name = 'ConfigError'; }
}

/** `file:line:col` of the value at `path` (or of its nearest parent that is in the file); `file` alone when none is. */
export type Locate = (path: readonly PropertyKey[]) => string;

/** Parse and validate YAML text; `file` is used in messages and to resolve relative paths. */
export function parseConfig(text: string, file = '<config>'): Config {
  return parseConfigLocated(text, file).config;
}

/** The same, also returning where each key is in the file (for checks that run after validation, see check.ts). */
export function parseConfigLocated(text: string, file = '<config>'): { config: Config; where: Locate } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length) {
    // One line for the first error: later ones are almost always its echo (an indentation slip breaks every line below).
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
    const message = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError(`invalid YAML in ${file}`, [`${file}:${pos.line}:${pos.col}: ${message}`]);
  }
  const raw = doc.toJS() ?? {};
  const at = (offset: number): string => { const { line, col } = lineCounter.linePos(offset); return `${file}:${line}:${col}`; };
  const where: Locate = (path) => {
    for (let p = [...path]; ; p = p.slice(0, -1)) {
      const node = p.length ? doc.getIn(p as unknown[], true) : doc.contents;
      const range = isNode(node) ? node.range : undefined;
      if (range) return at(range[0]);
      if (!p.length) return file;
    }
  };
  /** Where a key itself is written (an unknown key: point at its name, not at its value). */
  const whereKey = (path: readonly PropertyKey[]): string => {
    const parent = path.length > 1 ? doc.getIn(path.slice(0, -1) as unknown[], true) : doc.contents;
    const pair = isMap(parent) ? parent.items.find((i) => isScalar(i.key) && String(i.key.value) === String(path.at(-1))) : undefined;
    const range = pair && isNode(pair.key) ? pair.key.range : undefined;
    return range ? at(range[0]) : where(path);
  };
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => `${whereKey([...issue.path, k])}: unknown key '${[...issue.path, k].join('.')}'`).join('\n');
      }
      const key = issue.path.join('.') || '(top level)';
      return `${where(issue.path)}: ${key}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration in ${file}`, problems);
  }
  return { config: resolveSecrets(result.data, dirname(resolve(file)), where), where };
}

export function loadConfig(file: string): Config {
  return loadConfigLocated(file).config;
}

export function loadConfigLocated(file: string): { config: Config; where: Locate } {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) {
    throw new ConfigError(`cannot read ${file}`, [`${file}: cannot read it: ${(e as Error).message}`]);
  }
  return parseConfigLocated(text, file);
}

function readSecret(baseDir: string, file: string, path: readonly string[], where: Locate): string {
  const key = path.join('.');
  try { return readFileSync(resolve(baseDir, file), 'utf8').replace(/\r?\n$/, ''); } catch (e) {
    throw new ConfigError(`cannot read secret file for ${key}`, [`${where(path)}: ${key}: ${(e as Error).message}`]);
  }
}

function resolveSecrets(c: Config, baseDir: string, where: Locate): Config {
  const abs = (p: string) => resolve(baseDir, p);
  const out: Config = structuredClone(c);
  if (out.tls) {
    out.tls.certFile = abs(out.tls.certFile); out.tls.keyFile = abs(out.tls.keyFile);
    for (const s of out.tls.sni) { s.certFile = abs(s.certFile); s.keyFile = abs(s.keyFile); }
  }
  if (out.directory.static) out.directory.static.file = abs(out.directory.static.file);
  if (out.oauth?.jwt?.jwksFile) out.oauth.jwt.jwksFile = abs(out.oauth.jwt.jwksFile);
  // Each `…File` key is read into its inline key and dropped: the resolved config names one of the two, as the schema
  // demands of the file, so validating it again (or comparing it at a reload) sees the value, never both keys.
  for (const { path, holder, pair } of secretFileHolders(out)) {
    const file = holder[pair.file];
    if (typeof file !== 'string') continue;
    holder[pair.value] = readSecret(baseDir, file, [...path, pair.file], where);
    delete holder[pair.file];
  }
  return deepFreeze(out);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
