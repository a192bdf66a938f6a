// Owns reading config/example.yaml as documentation: which key paths it shows (set or commented out) and the comment
// that explains each. Must not validate values or know the schema's keys beyond the `isKnown` predicate it is given.
import { parse } from 'yaml';

/** One key the example shows: `path` uses real names (backends.backend-a.host) and `[]` for sequence items. */
export interface ExampleKey {
  path: string[];
  /** 1-based line in the example file. */
  line: number;
  /** Shown commented out (`# key: value`) rather than set. */
  commented: boolean;
  /** The comment lines directly above the key and its trailing comment, joined with spaces ('' when none). */
  description: string;
  /** The YAML value when it is a scalar or a flow collection written on the key's line. */
  value?: unknown;
  hasValue: boolean;
  /** Found inside a flow collection (`{ a: 1 }`) on a commented-out line: an example of an optional section, not a default. */
  example?: boolean;
}

export interface ExampleDocs {
  keys: ExampleKey[];
  /**
   * Comment text that belongs to a key's section (above the key, trailing it, or inside its block), by the key's
   * path joined with '.'; a child key named in it (`name:`) counts as documented there.
   */
  sections: Map<string, string[]>;
}

interface Frame { indent: number; path: string[] }

const KEY = /^([A-Za-z_][\w-]*|"[^"]+"|'[^']+'):(?:\s+(.*))?$/;

/** Split `text` into value and trailing comment (a `#` after whitespace, outside quotes). */
export function splitComment(text: string): { value: string; comment: string | undefined; at: number } {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote) { if (ch === quote) quote = undefined; continue; }
    if (ch === '"' || ch === "'") { if (i === 0 || /[\s[{,:]/.test(text[i - 1] ?? '')) quote = ch; continue; }
    if (ch === '#' && (i === 0 || /\s/.test(text[i - 1] ?? ''))) return { value: text.slice(0, i).trimEnd(), comment: text.slice(i + 1).trim(), at: i };
  }
  return { value: text.trimEnd(), comment: undefined, at: -1 };
}

const unquote = (k: string) => (/^["']/.test(k) ? k.slice(1, -1) : k);

function parseValue(v: string): { ok: boolean; value: unknown } {
  try { return { ok: true, value: parse(v) as unknown }; } catch { return { ok: false, value: undefined }; }
}

/** Keys inside a flow value (`{ a: 1, b: { c: 2 } }`, `[{ a: 1 }]`), as paths under `base`. */
function flowKeys(value: unknown, base: string[]): Array<{ path: string[]; value: unknown }> {
  const out: Array<{ path: string[]; value: unknown }> = [];
  if (Array.isArray(value)) {
    for (const item of value) if (item && typeof item === 'object') out.push(...flowKeys(item, [...base, '[]']));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push({ path: [...base, k], value: v });
      if (v && typeof v === 'object') out.push(...flowKeys(v, [...base, k]));
    }
  }
  return out;
}

/**
 * Read the example line by line. Set keys are found by indentation; a comment line `# key: value` is a key shown
 * commented out when `isKnown` accepts its path (else it is prose, part of the next key's description).
 */
export function readExampleDocs(text: string, isKnown: (path: readonly string[]) => boolean): ExampleDocs {
  const lines = text.split(/\r?\n/);
  const keys: ExampleKey[] = [];
  const sections = new Map<string, string[]>();
  const stack: Frame[] = [{ indent: -1, path: [] }];
  let cstack: Frame[] = [];
  let pending: string[] = [];
  let trailing: { key: ExampleKey; col: number } | undefined;
  let blockScalarIndent: number | undefined;
  /** Keys whose block section is open, for comments inside it. */
  let open: Array<{ indent: number; id: string }> = [];

  const addSection = (id: string, textLine: string) => { const s = sections.get(id) ?? []; s.push(textLine); sections.set(id, s); };
  const parentOf = (frames: Frame[], indent: number): Frame => {
    let best: Frame = frames[0]!;
    for (const f of frames) if (f.indent < indent && f.indent >= best.indent) best = f;
    return best;
  };
  const record = (k: ExampleKey, trailingComment: string | undefined) => {
    keys.push(k);
    const id = k.path.join('.');
    for (const p of pending) addSection(id, p);
    if (trailingComment) addSection(id, trailingComment);
  };

  lines.forEach((raw, i) => {
    const line = raw.replace(/\s+$/, '');
    const indent = line.length - line.trimStart().length;
    if (blockScalarIndent !== undefined) {
      if (!line.trim() || indent > blockScalarIndent) return;
      blockScalarIndent = undefined;
    }
    if (!line.trim()) { pending = []; trailing = undefined; return; }
    const body = line.trimStart();
    if (body.startsWith('#')) {
      // A comment inside a commented-out block (`#     # sentinel:`) is read as one more level of the same block.
      let rest = body.slice(1);
      while (/^ +# /.test(rest)) rest = rest.replace(/^( +)# /, '$1');
      const content = rest.startsWith(' ') ? rest.slice(1) : rest;
      if (trailing && indent === trailing.col) {
        trailing.key.description = `${trailing.key.description} ${content.trim()}`.trim();
        addSection(trailing.key.path.join('.'), content.trim());
        return;
      }
      trailing = undefined;
      const contentIndent = indent + (content.length - content.trimStart().length);
      const item = /^-\s+/.exec(content.trimStart());
      const keyText = item ? content.trimStart().slice(item[0].length) : content.trimStart();
      const parent = parentOf([...stack, ...cstack], contentIndent);
      if (item && keyText.startsWith('{')) {
        const { value: v } = splitComment(keyText);
        const parsed = parseValue(v);
        const base = [...parent.path, '[]'];
        if (parsed.ok && parsed.value && typeof parsed.value === 'object' && isKnown(base)) {
          for (const f of flowKeys(parsed.value, base)) keys.push({ path: f.path, line: i + 1, commented: true, description: '', value: f.value, hasValue: true, example: true });
          pending = [];
          return;
        }
      }
      const m = item ? undefined : KEY.exec(keyText);
      if (m) {
        const path = [...parent.path, unquote(m[1]!)];
        if (isKnown(path)) {
          const { value: v, comment, at } = splitComment(m[2] ?? '');
          const parsed = v ? parseValue(v) : { ok: false, value: undefined };
          const k: ExampleKey = { path, line: i + 1, commented: true, description: [...pending, comment ?? ''].join(' ').trim(), hasValue: parsed.ok };
          if (parsed.ok) k.value = parsed.value;
          record(k, comment);
          if (comment) addSection(parent.path.join('.'), comment);
          pending = [];
          if (parsed.ok) for (const f of flowKeys(parsed.value, path)) keys.push({ path: f.path, line: i + 1, commented: true, description: '', value: f.value, hasValue: true, example: true });
          if (!v) { cstack = cstack.filter((f) => f.indent < contentIndent); cstack.push({ indent: contentIndent, path }); }
          if (comment) trailing = { key: k, col: line.length - (m[2] ?? '').length + at };
          return;
        }
      }
      pending.push(content.trim());
      for (const o of open) if (o.indent < indent) addSection(o.id, content.trim());
      return;
    }
    // A set key (or a sequence item).
    cstack = [];
    trailing = undefined;
    while (stack.length > 1 && stack[stack.length - 1]!.indent >= indent) stack.pop();
    open = open.filter((o) => o.indent < indent);
    let keyIndent = indent;
    let rest = body;
    const item = /^-(\s+|$)/.exec(rest);
    if (item) {
      const parent = stack[stack.length - 1]!;
      const itemPath = [...parent.path, '[]'];
      rest = rest.slice(item[0].length);
      keyIndent = indent + item[0].length;
      if (rest.startsWith('{') || rest.startsWith('[')) {
        const { value: v, comment } = splitComment(rest);
        const parsed = parseValue(v);
        if (parsed.ok) for (const f of flowKeys(parsed.value, itemPath)) keys.push({ path: f.path, line: i + 1, commented: false, description: '', value: f.value, hasValue: true });
        if (comment) addSection(itemPath.join('.'), comment);
        pending = [];
        return;
      }
      if (!KEY.test(rest)) { pending = []; return; } // a scalar item
      stack.push({ indent, path: itemPath });
    }
    const m = KEY.exec(rest);
    if (!m) { pending = []; return; }
    const parent = stack[stack.length - 1]!;
    const path = [...parent.path, unquote(m[1]!)];
    const { value: v, comment, at } = splitComment(m[2] ?? '');
    const k: ExampleKey = { path, line: i + 1, commented: false, description: [...pending, comment ?? ''].join(' ').trim(), hasValue: v !== '' };
    if (/^[|>][-+0-9]*$/.test(v)) { blockScalarIndent = keyIndent; k.hasValue = false; } else if (v !== '') {
      const parsed = parseValue(v);
      if (parsed.ok) k.value = parsed.value;
    }
    record(k, comment);
    if (comment) for (const o of open) addSection(o.id, comment);
    pending = [];
    if (v && k.value && typeof k.value === 'object') {
      for (const f of flowKeys(k.value, path)) keys.push({ path: f.path, line: i + 1, commented: false, description: '', value: f.value, hasValue: true });
    }
    // An empty flow value (`pools: {}`) may be followed by its entries commented out, indented below it.
    if (v === '' || v === '{}' || v === '[]') stack.push({ indent: keyIndent, path });
    open.push({ indent: keyIndent, id: path.join('.') });
    if (comment) trailing = { key: k, col: line.length - (m[2] ?? '').length + at };
  });
  return { keys, sections };
}
