// Owns the one helper for optional properties under exactOptionalPropertyTypes: a key is present only with a value.
// Must not grow into a utility grab-bag.

/** `{ [key]: value }` when value is defined, else `{}` — spread it into an object literal. */
export function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
