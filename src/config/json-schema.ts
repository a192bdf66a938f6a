// Owns `mailproxy schema`: the JSON Schema of the config file, generated from the zod schema, each key described by
// the comment config/example.yaml gives it; and the comparison of the two (documented keys, unknown keys, defaults).
// Must not hold key descriptions of its own (example.yaml is the one place) nor change schema.ts.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { configSchema } from './schema.js';
import { readExampleDocs, type ExampleDocs, type ExampleKey } from './example-docs.js';

export type JsonSchema = { [key: string]: unknown };

/** The example that documents every key, shipped beside dist/ (config/example.yaml in the repository and the image). */
export const EXAMPLE_FILE = new URL('../../../config/example.yaml', import.meta.url);

/** One key of the schema: its path with `*` for a record's names and `[]` for array items. */
export interface SchemaKey { path: string[]; node: JsonSchema }

const asSchema = (v: unknown): JsonSchema | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonSchema) : undefined);

/** The options of a node: itself, or each branch of anyOf/oneOf/allOf. */
function options(node: JsonSchema): JsonSchema[] {
  const out = [node];
  for (const k of ['anyOf', 'oneOf', 'allOf']) {
    const list = node[k];
    if (Array.isArray(list)) for (const o of list) { const s = asSchema(o); if (s) out.push(...options(s)); }
  }
  return out;
}

/** Every property path of the schema, parents before children. */
export function schemaKeys(root: JsonSchema): SchemaKey[] {
  const out: SchemaKey[] = [];
  const walk = (node: JsonSchema, path: string[]) => {
    for (const o of options(node)) {
      const props = asSchema(o['properties']);
      if (props) for (const [k, v] of Object.entries(props)) { const s = asSchema(v); if (s) { out.push({ path: [...path, k], node: s }); walk(s, [...path, k]); } }
      const extra = asSchema(o['additionalProperties']);
      if (extra) walk(extra, [...path, '*']);
      const items = asSchema(o['items']);
      if (items) walk(items, [...path, '[]']);
    }
  };
  walk(root, []);
  return out;
}

/** The schema pattern (`backends.*.host`) for a real path (`backends.backend-a.host`), or undefined when no such key. */
export function patternOf(root: JsonSchema, path: readonly string[]): string | undefined {
  let nodes = [root];
  const pattern: string[] = [];
  for (const seg of path) {
    const next: JsonSchema[] = [];
    let via: string | undefined;
    for (const n of nodes.flatMap(options)) {
      if (seg === '[]') { const it = asSchema(n['items']); if (it) { next.push(it); via = '[]'; } continue; }
      const p = asSchema(asSchema(n['properties'])?.[seg]);
      if (p) { next.push(p); via ??= seg; continue; }
      const extra = asSchema(n['additionalProperties']);
      if (extra) { next.push(extra); via ??= '*'; }
    }
    if (!next.length || !via) return undefined;
    pattern.push(via);
    nodes = next;
  }
  return pattern.join('.');
}

/** The zod schema as JSON Schema (input side: keys with defaults are optional), without descriptions. */
export function bareJsonSchema(): JsonSchema {
  const generated = z.toJSONSchema(configSchema, { target: 'draft-07', io: 'input', unrepresentable: 'any' }) as JsonSchema;
  return JSON.parse(JSON.stringify(generated)) as JsonSchema;
}

/** The example's documentation, read against the schema (a `# key:` comment counts as a key only where one can be). */
export function exampleDocs(root: JsonSchema, exampleText: string): ExampleDocs {
  const setPaths = new Set(readExampleDocs(exampleText, () => false).keys.map((k) => k.path.join('.')));
  return readExampleDocs(exampleText, (p) => !setPaths.has(p.join('.')) && patternOf(root, p) !== undefined);
}

/** The description of one schema key: its own comment in the example, else the line naming it in its parent's comments. */
export function describeKey(root: JsonSchema, docs: ExampleDocs, key: readonly string[]): string | undefined {
  const want = key.join('.');
  const own = (k: ExampleKey) => patternOf(root, k.path) === want;
  const mine = docs.keys.filter(own);
  const described = mine.find((k) => !k.commented && k.description) ?? mine.find((k) => k.description);
  if (described) return described.description;
  const name = key[key.length - 1]!;
  // Keys of array items are explained in the array key's comments (listeners: "proxyProtocol: ...").
  const parents = new Set([key.slice(0, -1).join('.')]);
  for (let p = key.slice(0, -1); p[p.length - 1] === '[]'; p = p.slice(0, -1)) parents.add(p.slice(0, -1).join('.'));
  const escaped = name.replace(/[$()*+.?[\\\]^{|}]/g, '\\$&');
  const mention = new RegExp(`(?:^|[\\s(;])${escaped}:(?:\\s+(.*))?$`);
  const inFlow = new RegExp(`[{,]\\s*${escaped}:`);
  for (const [id, texts] of docs.sections) {
    const pattern = patternOf(root, id.split('.'));
    if (pattern === undefined || !parents.has(pattern) || key.length === 1) continue;
    for (const t of texts) {
      // "e.g. routing: { defaultBackend: backend-a }" shows a value: the section's prose is the explanation.
      if (inFlow.test(t)) return texts.join(' ');
      const m = mention.exec(t);
      if (m) return m[1]?.trim() || t;
    }
  }
  return mine.length ? '' : undefined;
}

/** The JSON Schema with each key's description taken from the example (read from EXAMPLE_FILE unless given). */
export function configJsonSchema(exampleText: string = readFileSync(EXAMPLE_FILE, 'utf8')): JsonSchema {
  const root = bareJsonSchema();
  const docs = exampleDocs(root, exampleText);
  for (const { path, node } of schemaKeys(root)) {
    const d = describeKey(root, docs, path);
    if (d) node['description'] = d;
  }
  return {
    $schema: root['$schema'],
    title: 'mailproxy configuration',
    description: 'Generated by `mailproxy schema` from the configuration schema; every key is explained in config/example.yaml.',
    ...Object.fromEntries(Object.entries(root).filter(([k]) => k !== '$schema')),
  };
}

export interface DocProblems {
  /** Schema keys the example neither sets, shows commented out, nor names in its section's comments. */
  undocumented: string[];
  /** Keys the example shows that the schema does not have (path: line). */
  unknown: string[];
  /** Example values that differ from the schema default (outside lists and per-backend entries, which are examples). */
  notDefault: string[];
}

/** Compare the example with the schema (the unit test asserts all three lists are empty). */
export function compareExample(exampleText: string): DocProblems {
  const root = bareJsonSchema();
  const docs = exampleDocs(root, exampleText);
  const undocumented = schemaKeys(root).map((k) => k.path).filter((p) => describeKey(root, docs, p) === undefined).map((p) => p.join('.'));
  const unknown = docs.keys.filter((k) => patternOf(root, k.path) === undefined).map((k) => `${k.path.join('.')} (line ${k.line})`);
  const notDefault: string[] = [];
  for (const k of docs.keys) {
    const pattern = patternOf(root, k.path);
    if (!pattern || !k.hasValue || k.example || pattern.includes('*') || pattern.includes('[]') || (k.value !== null && typeof k.value === 'object')) continue;
    const node = schemaKeys(root).find((s) => s.path.join('.') === pattern)?.node;
    if (node && 'default' in node && typeof node['default'] !== 'object' && node['default'] !== k.value) {
      notDefault.push(`${pattern} (line ${k.line}): example ${JSON.stringify(k.value)}, default ${JSON.stringify(node['default'])}`);
    }
  }
  return { undocumented: [...new Set(undocumented)], unknown, notDefault };
}
