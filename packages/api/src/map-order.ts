/**
 * The order in which the generated encoders write map fields.
 *
 * ts-proto would write a map in `Object.entries` order (insertion order, except
 * that integer-like keys come first, ascending). BuildKit marshals with Go's
 * deterministic protobuf marshalling, which writes map entries sorted by key:
 * strings by their UTF-8 bytes, integers numerically. An op's digest is the
 * sha256 of its bytes, so bkt must write maps the way BuildKit does;
 * scripts/generate.mjs makes every generated encoder call this function.
 */
export type MapKeyKind = 'string' | 'integer';

/** Entries of `map` sorted by key the way Go's deterministic marshalling sorts them. */
export function sortedMapEntries<V>(map: { [key: string]: V }, keyKind: MapKeyKind = 'string'): [string, V][] {
  const entries = Object.entries(map);
  if (keyKind === 'integer') {
    return entries.sort(([a], [b]) => {
      const x = BigInt(a);
      const y = BigInt(b);
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }
  return entries.sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}
