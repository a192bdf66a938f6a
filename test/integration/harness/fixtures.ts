// Owns finding test/fixtures/ (from src or dist) and rendering its {{PLACEHOLDER}} templates.
// Must not decide what values go into a template; callers pass every placeholder explicitly.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/** The repository's test/fixtures folder, found by walking up from this module (works in dist/ too). */
export function fixturesDir(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'test', 'fixtures');
    if (existsSync(join(dir, 'package.json')) && existsSync(candidate)) {
      cachedRoot = candidate;
      return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find test/fixtures above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** Replace every {{NAME}} in the fixture `relPath`; a placeholder without a value is an error. */
export function renderFixture(relPath: string, values: Record<string, string | number>): string {
  const text = readFileSync(join(fixturesDir(), relPath), 'utf8');
  return text.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_m, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`fixture ${relPath}: no value for {{${name}}}`);
    return String(v);
  });
}
