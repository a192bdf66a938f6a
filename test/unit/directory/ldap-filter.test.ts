// Proves RFC 4515 filter value escaping and filter template building, including non-ASCII values.
// Must not talk to LDAP.
import assert from 'node:assert/strict';
import { AndFilter, EqualityFilter, OrFilter, SubstringFilter, type Filter } from 'ldapts';
import { buildFilter, escapeFilterValue, parseFilter } from '../../../src/directory/ldap.js';

/** The equality values of a parsed (possibly nested) filter, in order. */
function values(f: Filter): unknown[] {
  if (f instanceof AndFilter || f instanceof OrFilter) return f.filters.flatMap(values);
  if (f instanceof EqualityFilter) return [f.value];
  return [`<${f.constructor.name}>`];
}

describe('RFC 4515 filter escaping', () => {
  const cases: Array<[string, string]> = [
    ['*', '\\2a'],
    ['(', '\\28'],
    [')', '\\29'],
    ['\\', '\\5c'],
    ['\0', '\\00'],
    ['alice', 'alice'],
    ['a.b-c_d+e@example.test', 'a.b-c_d+e@example.test'],
    [')(uid=*', '\\29\\28uid=\\2a'],
    ['*)(|(objectClass=*', '\\2a\\29\\28|\\28objectClass=\\2a'],
    ['josé', 'jos\\c3\\a9'],
    ['日本', '\\e6\\97\\a5\\e6\\9c\\ac'],
    ['a\tb\x7f', 'a\\09b\\7f'],
  ];
  for (const [input, expected] of cases) {
    it(`escapes ${JSON.stringify(input)}`, () => assert.equal(escapeFilterValue(input), expected));
  }

  it('leaves no unescaped metacharacter behind for any single byte value', () => {
    for (let b = 0; b < 0x80; b++) {
      const out = escapeFilterValue(String.fromCharCode(b));
      const bare = out.replace(/\\[0-9a-f]{2}/g, '');
      assert.doesNotMatch(bare, /[()*\\\0]/, `byte ${b}`);
    }
  });

  it('substitutes every %u of the template', () => {
    assert.equal(buildFilter('(|(uid=%u)(mail=%u))', 'a*b'), '(|(uid=a\\2ab)(mail=a\\2ab))');
  });

  it('keeps an injected filter inside one equality value', () => {
    const f = parseFilter(buildFilter('(&(objectClass=person)(|(uid=%u)(mail=%u)))', ')(uid=*'));
    assert.ok(f instanceof AndFilter);
    assert.deepEqual(values(f), ['person', ')(uid=*', ')(uid=*']);
  });

  it('a lone * stays an equality match, not a presence or substring filter', () => {
    const f = parseFilter(buildFilter('(uid=%u)', '*'));
    assert.ok(f instanceof EqualityFilter);
    assert.equal(f.value, '*');
    assert.ok(!(parseFilter(buildFilter('(uid=%u)', 'a*')) instanceof SubstringFilter));
  });

  it('escaped multi-byte UTF-8 reaches ldapts as the original characters (no double encoding)', () => {
    const f = parseFilter(buildFilter('(uid=%u)', 'josé 日本'));
    assert.ok(f instanceof EqualityFilter);
    assert.equal(f.value, 'josé 日本');
  });

  it('raw non-ASCII in the template itself is kept', () => {
    const f = parseFilter(buildFilter('(&(ou=Zürich)(uid=%u))', 'x'));
    assert.deepEqual(values(f), ['Zürich', 'x']);
  });

  it('backslash and NUL survive parsing as themselves', () => {
    const f = parseFilter(buildFilter('(uid=%u)', 'a\\b\0c'));
    assert.ok(f instanceof EqualityFilter);
    assert.equal(f.value, 'a\\b\0c');
  });
});
