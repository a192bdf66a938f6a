// Proves `mailproxy schema` and config/example.yaml cannot drift: every schema key is documented in the example, every
// example key exists in the schema, example values equal the defaults, descriptions come from the example's comments,
// and the committed config/mailproxy.schema.json is what the generator prints now.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bareJsonSchema, compareExample, configJsonSchema, patternOf, schemaKeys, type JsonSchema } from '../../../src/config/json-schema.js';
import { readExampleDocs, splitComment } from '../../../src/config/example-docs.js';

const ROOT = new URL('../../../../', import.meta.url);
const EXAMPLE = readFileSync(new URL('config/example.yaml', ROOT), 'utf8');

/** The node at a schema key path (`listeners.[].tls`). */
function nodeAt(schema: JsonSchema, path: string): JsonSchema | undefined {
  return schemaKeys(schema).find((k) => k.path.join('.') === path)?.node;
}

describe('config JSON Schema and config/example.yaml', () => {
  it('every schema key is documented in example.yaml, every example key is in the schema, example values are the defaults', () => {
    const { undocumented, unknown, notDefault } = compareExample(EXAMPLE);
    assert.deepEqual(undocumented, [], `schema keys missing from config/example.yaml (add the key, commented out if optional, with a comment saying why): ${undocumented.join(', ')}`);
    assert.deepEqual(unknown, [], `config/example.yaml shows keys the schema does not have: ${unknown.join(', ')}`);
    assert.deepEqual(notDefault, [], `config/example.yaml values that differ from the schema defaults: ${notDefault.join('; ')}`);
  });

  it('is a draft-07 schema: the YAML language server (VS Code YAML, Neovim) validates draft-07 and flags 2020-12 as not fully supported', () => {
    // yaml-language-server's schema service reports "Draft 2020-12 schemas are not yet fully supported." for such a
    // $schema; the generated schema needs nothing beyond draft-07.
    assert.equal(configJsonSchema()['$schema'], 'http://json-schema.org/draft-07/schema#');
    assert.doesNotMatch(JSON.stringify(configJsonSchema()), /"(\$defs|prefixItems|unevaluated\w+|dependent\w+|\$dynamicRef)"/);
  });

  it('config/mailproxy.schema.json is up to date (regenerate with: npm run schema)', () => {
    const committed = JSON.parse(readFileSync(new URL('config/mailproxy.schema.json', ROOT), 'utf8')) as unknown;
    assert.deepEqual(committed, configJsonSchema(EXAMPLE), 'config/mailproxy.schema.json is stale: run `npm run schema` and commit it');
  });

  it('descriptions come from the comment above a key, its trailing comment, or the line naming it in its section', () => {
    const s = configJsonSchema(EXAMPLE);
    assert.match(String(nodeAt(s, 'instanceName')?.['description']), /^Name in logs and metrics/);
    assert.match(String(nodeAt(s, 'health.fall')?.['description']), /^consecutive failures to become down/);
    assert.match(String(nodeAt(s, 'imap.limits.authFailureMaxDelayMs')?.['description']), /doubles the delay up to this; shared by IMAP, POP3 and submission/);
    assert.match(String(nodeAt(s, 'listeners.[].proxyProtocol')?.['description']), /^accept HAProxy PROXY v1\/v2 headers/);
    assert.match(String(nodeAt(s, 'backends.*.standby')?.['description']), /standby probes up/);
    assert.match(String(nodeAt(s, 'directory.ldap.tlsCaFile')?.['description']), /internal CA/);
    assert.match(String(nodeAt(s, 'routing.defaultBackend')?.['description']), /^Backend for accounts without a host attribute/);
    assert.equal(nodeAt(s, 'admin.port')?.['default'], 8025);
    assert.equal(s['additionalProperties'], false);
  });

  it('the comparison fails for a key the example lacks, a key the schema lacks, and a value that is not the default', () => {
    const without = EXAMPLE.replace(/^ {2}kickWindowMs: .*\n/m, '');
    assert.notEqual(without, EXAMPLE);
    assert.deepEqual(compareExample(without).undocumented, ['health.kickWindowMs']);
    const extra = EXAMPLE.replace(/^ {2}kickWindowMs: (.*)\n/m, '  kickWindowMs: $1\n  kickWindowSeconds: 5\n');
    assert.deepEqual(compareExample(extra).unknown.map((u) => u.split(' ')[0]), ['health.kickWindowSeconds']);
    const changed = EXAMPLE.replace(/^ {2}rise: 2 /m, '  rise: 3 ');
    assert.match(compareExample(changed).notDefault.join(), /health\.rise .*example 3, default 2/);
  });

  it('maps real paths to schema patterns (records as *, arrays as [])', () => {
    const s = bareJsonSchema();
    assert.equal(patternOf(s, ['backends', 'backend-a', 'imap', 'port']), 'backends.*.imap.port');
    assert.equal(patternOf(s, ['listeners', '[]', 'tls']), 'listeners.[].tls');
    assert.equal(patternOf(s, ['health', 'nope']), undefined);
  });
});

describe('example-docs reader', () => {
  const known = (p: readonly string[]) => ['a', 'a.b', 'a.c', 'a.d', 'a.d.e', 'list', 'list.[]', 'list.[].x', 'list.[].y'].includes(p.join('.'));

  it('reads set keys, commented-out keys (nested, flow), trailing comments and their continuation lines', () => {
    const text = [
      '# about a',
      'a:',
      '  b: 1      # b trails',
      '            # and continues',
      '  # c: "x # not a comment"   # c is optional',
      '  # d:',
      '  #   e: 2',
      '# prose: this is not a key',
      'list:',
      '  - { x: 1 }',
      '  # - { x: 2, y: 3 }',
    ].join('\n');
    const docs = readExampleDocs(text, known);
    const by = (p: string) => docs.keys.filter((k) => k.path.join('.') === p);
    assert.equal(by('a')[0]?.description, 'about a');
    assert.equal(by('a.b')[0]?.description, 'b trails and continues');
    assert.equal(by('a.b')[0]?.value, 1);
    assert.equal(by('a.c')[0]?.commented, true);
    assert.equal(by('a.c')[0]?.value, 'x # not a comment');
    assert.equal(by('a.c')[0]?.description, 'c is optional');
    assert.equal(by('a.d.e')[0]?.value, 2);
    assert.equal(by('list.[].x').length, 2);
    assert.equal(by('list.[].y')[0]?.commented, true);
    assert.equal(by('prose').length, 0);
    assert.deepEqual(docs.sections.get('list'), ['prose: this is not a key']);
  });

  it('splits a trailing comment outside quotes only', () => {
    assert.deepEqual(splitComment('"a # b" # c'), { value: '"a # b"', comment: 'c', at: 8 });
    assert.deepEqual(splitComment('x#y'), { value: 'x#y', comment: undefined, at: -1 });
  });
});
