// Owns RFC 4515 LDAP filter text: value escaping, template substitution, parsing into ldapts Filters with the right octets.
// Must not talk to servers; ldap.ts uses it for every search.
import {
  AndFilter, ApproximateFilter, EqualityFilter, ExtensibleFilter, FilterParser, GreaterThanEqualsFilter, LessThanEqualsFilter, NotFilter,
  OrFilter, SubstringFilter, type Filter,
} from 'ldapts';

/**
 * RFC 4515 §3 value encoding: NUL, '(', ')', '*' and '\' MUST be written as '\' + two hex digits; we also escape every
 * other control and every non-ASCII octet (allowed by §3), so the filter text is plain ASCII and unambiguous in logs.
 */
export function escapeFilterValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const special = byte < 0x20 || byte >= 0x7f || byte === 0x28 || byte === 0x29 || byte === 0x2a || byte === 0x5c;
    out += special ? `\\${byte.toString(16).padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

/** Substitute every %u of a filter template with the escaped value. */
export function buildFilter(template: string, value: string): string {
  return template.replaceAll('%u', escapeFilterValue(value));
}

/**
 * Parse filter text into an ldapts Filter whose values carry the right UTF-8 octets.
 * ldapts' parser turns each '\XX' escape into one UTF-16 unit and re-encodes the value as UTF-8, which would
 * double-encode escaped multi-byte characters; so every value is made of escaped octets first and decoded here.
 */
export function parseFilter(text: string): Filter {
  const octetsOnly = text.replace(/[^\x00-\x7f]/gu, (ch) => escapeFilterValue(ch));
  const filter = FilterParser.parseString(octetsOnly);
  fixOctets(filter);
  return filter;
}

function utf8(octets: string): string {
  return Buffer.from(octets, 'latin1').toString('utf8');
}

function fixOctets(f: Filter): void {
  if (f instanceof AndFilter || f instanceof OrFilter) f.filters.forEach(fixOctets);
  else if (f instanceof NotFilter) fixOctets(f.filter);
  else if (f instanceof SubstringFilter) {
    f.initial = utf8(f.initial);
    f.final = utf8(f.final);
    f.any = f.any.map(utf8);
  } else if (f instanceof EqualityFilter || f instanceof ApproximateFilter || f instanceof GreaterThanEqualsFilter
    || f instanceof LessThanEqualsFilter || f instanceof ExtensibleFilter) {
    if (typeof f.value === 'string') f.value = utf8(f.value);
  }
}
