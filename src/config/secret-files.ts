// Owns the list of config keys given either inline or as a file (`password` / `passwordFile` …) and finding them in a config.
// Must not read files or validate (the schema refuses both keys at once; load.ts reads the file into the value).

/** One inline/file pair: the object holding it (a `*` step: every entry of a record) and its two keys. */
export interface SecretFilePair { at: readonly string[]; value: string; file: string }

export const SECRET_FILE_PAIRS: readonly SecretFilePair[] = [
  { at: ['directory', 'ldap'], value: 'bindPassword', file: 'bindPasswordFile' },
  { at: ['directory', 'ldap'], value: 'tlsCa', file: 'tlsCaFile' },
  { at: ['backendLogin'], value: 'masterPassword', file: 'masterPasswordFile' },
  { at: ['health', 'deepProbe'], value: 'password', file: 'passwordFile' },
  { at: ['backends', '*'], value: 'tlsCa', file: 'tlsCaFile' },
  { at: ['oauth'], value: 'tlsCa', file: 'tlsCaFile' },
  { at: ['oauth', 'introspection'], value: 'clientSecret', file: 'clientSecretFile' },
  { at: ['admin'], value: 'token', file: 'tokenFile' },
  { at: ['tier', 'redis'], value: 'password', file: 'passwordFile' },
  { at: ['tier', 'redis', 'sentinel'], value: 'password', file: 'passwordFile' },
  { at: ['tier', 'redis', 'tls'], value: 'ca', file: 'caFile' },
];

export interface SecretFileHolder { path: string[]; holder: Record<string, unknown>; pair: SecretFilePair }

/** Every object in `config` that may hold a pair, with its path (present objects only). */
export function secretFileHolders(config: unknown): SecretFileHolder[] {
  const out: SecretFileHolder[] = [];
  const walk = (node: unknown, rest: readonly string[], path: string[], pair: SecretFilePair): void => {
    if (!node || typeof node !== 'object') return;
    const [step, ...more] = rest;
    if (step === undefined) { out.push({ path, holder: node as Record<string, unknown>, pair }); return; }
    const entries = step === '*' ? Object.entries(node) : [[step, (node as Record<string, unknown>)[step]] as const];
    for (const [k, v] of entries) walk(v, more, [...path, k], pair);
  };
  for (const pair of SECRET_FILE_PAIRS) walk(config, pair.at, [], pair);
  return out;
}
