/**
 * BuildKit's cache config (`application/vnd.buildkit.cacheconfig.v0`): the
 * JSON document, read with Go's rules and written normalised, so that equal
 * caches serialise to the same bytes (a re-export pushes nothing new).
 *
 * Go's encoding rules reproduced:
 * - `layers[].parent` is an `int` with `omitempty`: a missing `parent` is 0
 *   (the first layer), "no parent" is an explicit -1.
 * - `records[].layers` holds results (a layer index: that layer and its
 *   parents), `records[].chains` results as explicit layer lists.
 * - `layer`, `link` and `createdAt` are always written (a zero time as
 *   `0001-01-01T00:00:00Z`); empty arrays are left out.
 *
 * One field is bkt's own, `bkt.canonical` on a record (BuildKit's importer
 * ignores unknown fields): a definition-based key whose op reads inputs by
 * content names the record of its content-based key, which later keys are
 * built from — so an importer matching the definition-based key need not
 * fetch the inputs to compute the other.
 */
import { BktError, type Digest } from '@bkt/core';
import { isDigest } from '@bkt/oci';

const CANONICAL_FIELD = 'bkt.canonical';
const CACHE_MOUNTS_FIELD = 'bkt.cacheMounts';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';

/** Go's zero `time.Time`, as `encoding/json` writes it. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

export interface CacheLayerAnnotations {
  mediaType?: string;
  diffID?: Digest;
  size?: number;
  createdAt?: string;
}

export interface CacheLayer {
  blob: Digest;
  /** Index of the parent layer; -1 for none. */
  parent: number;
  annotations?: CacheLayerAnnotations;
}

export interface CacheInput {
  selector?: string;
  /** Index into `records`. */
  link: number;
}

export interface CacheResult {
  /** The result is this layer and its parents. */
  layer: number;
  createdAt: string;
}

export interface ChainedResult {
  /** The result's layers, base first. */
  layers: number[];
  createdAt: string;
}

export interface CacheConfigRecord {
  digest: Digest;
  results: CacheResult[];
  chains: ChainedResult[];
  inputs: CacheInput[][];
  /** bkt's `bkt.canonical`: the record whose key downstream keys are built from (see the module comment). */
  canonical?: number;
}

/** bkt's `bkt.cacheMounts`: the contents of `RUN --mount=type=cache` mounts, by cache ID, each a layer (no parent). */
export interface CacheMountEntry {
  id: string;
  layer: number;
}

export interface CacheConfig {
  layers: CacheLayer[];
  records: CacheConfigRecord[];
  cacheMounts?: CacheMountEntry[];
}

function invalid(what: string, problem: string): BktError {
  return new BktError('INVALID_ARGUMENT', `${what}: invalid cache config: ${problem}`, { mediaType: CACHE_CONFIG_MEDIA_TYPE });
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/**
 * Reads a cache config; `what` names it in errors (`cache config sha256:… of
 * REF`). Every index is checked (parents, results, links in range; parents
 * without cycles), and the error names the field (`records[3].inputs[0][1].link`).
 * No size limit: BuildKit refuses configs over 1 MiB (moby/buildkit#3719).
 */
export function parseCacheConfig(bytes: Uint8Array | string, what: string): CacheConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw invalid(what, `not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid(what, 'not a JSON object');
  const d = doc as Record<string, unknown>;
  const arr = (v: unknown, at: string): unknown[] => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw invalid(what, `${at} is not an array`);
    return v;
  };
  const obj = (v: unknown, at: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(what, `${at} is not an object`);
    return v as Record<string, unknown>;
  };
  const digest = (v: unknown, at: string): Digest => {
    if (typeof v !== 'string' || !isDigest(v)) throw invalid(what, `${at} is not a sha256 digest (${JSON.stringify(v)?.slice(0, 80)})`);
    return v as Digest;
  };
  const time = (v: unknown, at: string): string => {
    if (v === undefined || v === null) return ZERO_TIME;
    if (typeof v !== 'string') throw invalid(what, `${at} is not a time`);
    return v;
  };
  const rawLayers = arr(d.layers, 'layers');
  const layers: CacheLayer[] = rawLayers.map((l, i) => {
    const o = obj(l, `layers[${i}]`);
    const parent = o.parent === undefined ? 0 : o.parent;
    if (!isInt(parent) || parent < -1 || parent >= rawLayers.length || parent === i) {
      throw invalid(what, `layers[${i}].parent is ${JSON.stringify(o.parent)} (want -1 or the index of another of the ${rawLayers.length} layers)`);
    }
    const layer: CacheLayer = { blob: digest(o.blob, `layers[${i}].blob`), parent };
    if (o.annotations !== undefined && o.annotations !== null) {
      const a = obj(o.annotations, `layers[${i}].annotations`);
      const ann: CacheLayerAnnotations = {};
      if (typeof a.mediaType === 'string') ann.mediaType = a.mediaType;
      if (a.diffID !== undefined) ann.diffID = digest(a.diffID, `layers[${i}].annotations.diffID`);
      if (a.size !== undefined) {
        if (!isInt(a.size) || a.size < 0) throw invalid(what, `layers[${i}].annotations.size is not a non-negative integer`);
        ann.size = a.size;
      }
      if (typeof a.createdAt === 'string') ann.createdAt = a.createdAt;
      layer.annotations = ann;
    }
    return layer;
  });
  // Parents must end at -1: a cycle would make a result of infinite layers.
  for (let i = 0; i < layers.length; i++) {
    let steps = 0;
    for (let p = layers[i].parent; p !== -1; p = layers[p].parent) {
      if (++steps > layers.length) throw invalid(what, `layers[${i}]: its parents form a cycle`);
    }
  }
  const rawRecords = arr(d.records, 'records');
  const layerIndex = (v: unknown, at: string): number => {
    if (!isInt(v) || v < 0 || v >= layers.length) throw invalid(what, `${at} is ${JSON.stringify(v)} (want the index of one of the ${layers.length} layers)`);
    return v;
  };
  const records: CacheConfigRecord[] = rawRecords.map((r, i) => {
    const o = obj(r, `records[${i}]`);
    const canonical = o[CANONICAL_FIELD];
    if (canonical !== undefined && (!isInt(canonical) || canonical < 0 || canonical >= rawRecords.length)) {
      throw invalid(what, `records[${i}].${CANONICAL_FIELD} is ${JSON.stringify(canonical)} (want the index of one of the ${rawRecords.length} records)`);
    }
    return {
      ...(canonical !== undefined ? { canonical: canonical as number } : {}),
      digest: digest(o.digest, `records[${i}].digest`),
      results: arr(o.layers, `records[${i}].layers`).map((x, j) => {
        const res = obj(x, `records[${i}].layers[${j}]`);
        return { layer: layerIndex(res.layer ?? 0, `records[${i}].layers[${j}].layer`), createdAt: time(res.createdAt, `records[${i}].layers[${j}].createdAt`) };
      }),
      chains: arr(o.chains, `records[${i}].chains`).map((x, j) => {
        const c = obj(x, `records[${i}].chains[${j}]`);
        return {
          layers: arr(c.layers, `records[${i}].chains[${j}].layers`).map((l, k) => layerIndex(l, `records[${i}].chains[${j}].layers[${k}]`)),
          createdAt: time(c.createdAt, `records[${i}].chains[${j}].createdAt`),
        };
      }),
      inputs: arr(o.inputs, `records[${i}].inputs`).map((alts, j) =>
        arr(alts, `records[${i}].inputs[${j}]`).map((x, k) => {
          const inp = obj(x, `records[${i}].inputs[${j}][${k}]`);
          const link = inp.link ?? 0;
          if (!isInt(link) || link < 0 || link >= rawRecords.length) {
            throw invalid(what, `records[${i}].inputs[${j}][${k}].link is ${JSON.stringify(inp.link)} (want the index of one of the ${rawRecords.length} records)`);
          }
          if (inp.selector !== undefined && typeof inp.selector !== 'string') throw invalid(what, `records[${i}].inputs[${j}][${k}].selector is not a string`);
          return { link, ...(typeof inp.selector === 'string' && inp.selector !== '' ? { selector: inp.selector } : {}) };
        }),
      ),
    };
  });
  const cacheMounts = arr(d[CACHE_MOUNTS_FIELD], CACHE_MOUNTS_FIELD).map((x, i) => {
    const o = obj(x, `${CACHE_MOUNTS_FIELD}[${i}]`);
    if (typeof o.id !== 'string' || o.id === '') throw invalid(what, `${CACHE_MOUNTS_FIELD}[${i}].id is not a cache ID`);
    return { id: o.id, layer: layerIndex(o.layer, `${CACHE_MOUNTS_FIELD}[${i}].layer`) };
  });
  return { layers, records, ...(cacheMounts.length > 0 ? { cacheMounts } : {}) };
}

/** The layers of a result given as a layer index: the layer's parents first, then it. */
export function layerChain(config: CacheConfig, layer: number): number[] {
  const out: number[] = [];
  for (let p = layer; p !== -1; p = config.layers[p].parent) out.unshift(p);
  return out;
}

/** The results of record `i`, each as its layer indexes, base first. */
export function recordResults(config: CacheConfig, i: number): { layers: number[]; createdAt: string }[] {
  const r = config.records[i];
  return [...r.results.map((res) => ({ layers: layerChain(config, res.layer), createdAt: res.createdAt })), ...r.chains.map((c) => ({ layers: [...c.layers], createdAt: c.createdAt }))];
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The normal form of `config`: layers deduplicated by their chain (blob and
 * parents) and ordered by it, parents first; records merged by digest (the
 * results of one canonical key only: a result is valid with its own) and
 * ordered by digest, their results, inputs and links deduplicated and
 * sorted; results given as a layer whose parents are exactly the result's
 * layers where there is one, as chains otherwise. Records no result and no
 * other record reaches through links are kept (they carry the key structure).
 * Equal caches have one normal form.
 */
export function normalizeCacheConfig(config: CacheConfig): CacheConfig {
  // Layers by the string of their chain's blobs.
  const chainKey = new Map<number, string>();
  const keyOf = (i: number): string => {
    let k = chainKey.get(i);
    if (k === undefined) {
      const l = config.layers[i];
      k = l.parent === -1 ? l.blob : `${keyOf(l.parent)}/${l.blob}`;
      chainKey.set(i, k);
    }
    return k;
  };
  const layerByKey = new Map<string, CacheLayer & { key: string; parentKey?: string }>();
  for (let i = 0; i < config.layers.length; i++) {
    const key = keyOf(i);
    const l = config.layers[i];
    const prev = layerByKey.get(key);
    const annotations = mergeAnnotations(prev?.annotations, l.annotations);
    layerByKey.set(key, { blob: l.blob, parent: -1, key, ...(l.parent !== -1 ? { parentKey: keyOf(l.parent) } : {}), ...(annotations ? { annotations } : {}) });
  }
  const sortedLayers = [...layerByKey.values()].sort((a, b) => cmp(a.key, b.key));
  const newIndex = new Map(sortedLayers.map((l, i) => [l.key, i]));
  const layers: CacheLayer[] = sortedLayers.map((l) => ({
    blob: l.blob,
    parent: l.parentKey === undefined ? -1 : newIndex.get(l.parentKey)!,
    ...(l.annotations ? { annotations: l.annotations } : {}),
  }));
  const byChain = (indexes: number[]) => indexes.map((i) => keyOf(i)).join('|');

  // Records merged by digest.
  const digests = [...new Set(config.records.map((r) => r.digest))].sort(cmp);
  const recIndex = new Map(digests.map((d, i) => [d, i]));
  // A result is valid only with the canonical key of the record it came with
  // (that key names its content): records of one digest are grouped by
  // canonical, and the record keeps one group's results — the last group
  // (the newer export) that has any. Inputs are the key's structure, merged.
  type Results = Map<string, { layers: number[]; createdAt: string }>;
  const merged = new Map<Digest, { groups: Map<string, Results>; chosen?: string; inputs: Map<number, Map<string, CacheInput>> }>();
  for (const d of digests) merged.set(d, { groups: new Map(), inputs: new Map() });
  config.records.forEach((r, i) => {
    const m = merged.get(r.digest)!;
    const canonical = r.canonical !== undefined && config.records[r.canonical].digest !== r.digest ? config.records[r.canonical].digest : '';
    let group = m.groups.get(canonical);
    if (!group) m.groups.set(canonical, (group = new Map()));
    const results = recordResults(config, i);
    if (results.length > 0 || m.chosen === undefined || (m.groups.get(m.chosen)!.size === 0)) m.chosen = canonical;
    for (const res of results) {
      const top = res.layers[res.layers.length - 1];
      const asLayer = top !== undefined && sameList(layerChain(config, top), res.layers);
      const key = asLayer ? keyOf(top) : `chain:${byChain(res.layers)}`;
      const prev = group.get(key);
      // The oldest time wins: merging two exports keeps when a result was first made.
      if (!prev || (res.createdAt !== ZERO_TIME && (prev.createdAt === ZERO_TIME || earlier(res.createdAt, prev.createdAt)))) {
        group.set(key, { layers: res.layers.map((l) => newIndex.get(keyOf(l))!), createdAt: res.createdAt });
      }
    }
    r.inputs.forEach((alts, j) => {
      let slot = m.inputs.get(j);
      if (!slot) m.inputs.set(j, (slot = new Map()));
      for (const a of alts) {
        const link = recIndex.get(config.records[a.link].digest)!;
        const k = `${config.records[a.link].digest}\u0000${a.selector ?? ''}`;
        slot.set(k, { link, ...(a.selector ? { selector: a.selector } : {}) });
      }
    });
  });
  const records: CacheConfigRecord[] = digests.map((d) => {
    const m = merged.get(d)!;
    const results: CacheResult[] = [];
    const chains: ChainedResult[] = [];
    const canonical = m.chosen || undefined;
    for (const [key, res] of [...m.groups.get(m.chosen!)!.entries()].sort((a, b) => cmp(a[0], b[0]))) {
      if (!key.startsWith('chain:')) results.push({ layer: res.layers[res.layers.length - 1], createdAt: res.createdAt });
      else chains.push({ layers: res.layers, createdAt: res.createdAt });
    }
    const width = m.inputs.size === 0 ? 0 : Math.max(...m.inputs.keys()) + 1;
    const inputs: CacheInput[][] = [];
    for (let j = 0; j < width; j++) {
      const slot = m.inputs.get(j);
      inputs.push(slot ? [...slot.entries()].sort((a, b) => cmp(a[0], b[0])).map(([, v]) => v) : []);
    }
    return { digest: d, results, chains, inputs, ...(canonical !== undefined ? { canonical: recIndex.get(canonical as Digest)! } : {}) };
  });
  // Cache mounts by ID (a later entry wins: the newer export).
  const mounts = new Map<string, number>();
  for (const c of config.cacheMounts ?? []) mounts.set(c.id, newIndex.get(keyOf(c.layer))!);
  const cacheMounts = [...mounts.entries()].sort((a, b) => cmp(a[0], b[0])).map(([id, layer]) => ({ id, layer }));
  return { layers, records, ...(cacheMounts.length > 0 ? { cacheMounts } : {}) };
}

const sameList = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function mergeAnnotations(a: CacheLayerAnnotations | undefined, b: CacheLayerAnnotations | undefined): CacheLayerAnnotations | undefined {
  if (!a) return b ? { ...b } : undefined;
  if (!b) return { ...a };
  return { ...b, ...a };
}

/**
 * The bytes of `config`'s normal form, with Go's field order and omission
 * rules (see the module comment), as BuildKit's importer reads them.
 */
export function serializeCacheConfig(config: CacheConfig): Uint8Array {
  const n = normalizeCacheConfig(config);
  const doc: Record<string, unknown> = {};
  if (n.layers.length > 0) {
    doc.layers = n.layers.map((l) => {
      const o: Record<string, unknown> = { blob: l.blob };
      if (l.parent !== 0) o.parent = l.parent;
      if (l.annotations) {
        const a: Record<string, unknown> = {};
        if (l.annotations.mediaType) a.mediaType = l.annotations.mediaType;
        if (l.annotations.diffID) a.diffID = l.annotations.diffID;
        if (l.annotations.size) a.size = l.annotations.size;
        a.createdAt = l.annotations.createdAt ?? ZERO_TIME;
        o.annotations = a;
      }
      return o;
    });
  }
  if (n.records.length > 0) {
    doc.records = n.records.map((r) => {
      const o: Record<string, unknown> = {};
      if (r.results.length > 0) o.layers = r.results.map((x) => ({ layer: x.layer, createdAt: x.createdAt }));
      if (r.chains.length > 0) o.chains = r.chains.map((x) => ({ layers: x.layers, createdAt: x.createdAt }));
      o.digest = r.digest;
      if (r.inputs.length > 0) o.inputs = r.inputs.map((alts) => alts.map((a) => (a.selector ? { selector: a.selector, link: a.link } : { link: a.link })));
      if (r.canonical !== undefined) o[CANONICAL_FIELD] = r.canonical;
      return o;
    });
  }
  if (n.cacheMounts?.length) doc[CACHE_MOUNTS_FIELD] = n.cacheMounts.map((c) => ({ id: c.id, layer: c.layer }));
  return new TextEncoder().encode(JSON.stringify(doc));
}

/** Merges caches (several imports, or an export into a ref that already holds another runner's records). */
export function mergeCacheConfigs(configs: CacheConfig[]): CacheConfig {
  const layers: CacheLayer[] = [];
  const records: CacheConfigRecord[] = [];
  const cacheMounts: CacheMountEntry[] = [];
  for (const c of configs) {
    const lo = layers.length;
    const ro = records.length;
    for (const m of c.cacheMounts ?? []) cacheMounts.push({ id: m.id, layer: m.layer + lo });
    for (const l of c.layers) layers.push({ ...l, parent: l.parent === -1 ? -1 : l.parent + lo });
    for (const r of c.records) {
      records.push({
        digest: r.digest,
        results: r.results.map((x) => ({ ...x, layer: x.layer + lo })),
        chains: r.chains.map((x) => ({ ...x, layers: x.layers.map((l) => l + lo) })),
        inputs: r.inputs.map((alts) => alts.map((a) => ({ ...a, link: a.link + ro }))),
        ...(r.canonical !== undefined ? { canonical: r.canonical + ro } : {}),
      });
    }
  }
  return normalizeCacheConfig({ layers, records, ...(cacheMounts.length > 0 ? { cacheMounts } : {}) });
}

/** Whether RFC 3339 time `a` is before `b` (as instants: Go writes `…05.1Z` or offsets; the text breaks ties). */
function earlier(a: string, b: string): boolean {
  const ta = Date.parse(a);
  const tb = Date.parse(b);
  if (Number.isNaN(ta) || Number.isNaN(tb) || ta === tb) return a < b;
  return ta < tb;
}
