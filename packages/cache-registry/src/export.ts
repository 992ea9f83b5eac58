/**
 * A build's cache chain (the solver's `CacheChain`) as a cache config and
 * its layer blobs.
 *
 * - `mode=max`: every record, each exportable result with its layers.
 * - `mode=min`: the records the final result's keys are built from, with a
 *   result only where it is the final result or one of its layer prefixes
 *   (a base image, the steps of the final stage) — as BuildKit's min mode
 *   exports a vertex's dependencies "that already have transferable layers".
 *
 * A result's layers are its snapshot chain, base first: a snapshot unpacked
 * from a pulled image (or an imported cache) keeps its blob as it was (an
 * uncompressed one of the local image store is compressed as the export
 * asks, once: `recordedLayer`), any other is made into a layer by
 * `snapshotLayer` of `@bkt/oci` (computed once per snapshot and compression).
 */
import { BktError, requireRecords, type BuildContext, type CacheChain, type Digest, type Snapshot } from '@bkt/core';
import { compress, compressionOfMediaType, digesting, layerTar, MediaType, readLayerRecord, recordedLayer, snapshotLayer, type Compression, type Descriptor } from '@bkt/oci';
import { ZERO_TIME, type CacheConfig, type CacheConfigRecord, type CacheLayer } from './config.js';
import { UNCOMPRESSED_ANNOTATION } from './manifest.js';

export type CacheMode = 'min' | 'max';

export interface LayerExportOptions {
  compression: Compression;
  compressionLevel?: number;
  /** Recompress layers whose blob has another compression. */
  forceCompression: boolean;
  /** OCI layer media types (default) or Docker's. */
  ociMediaTypes: boolean;
}

/** A layer blob of an export: in the content store; `sources` are repositories it is known to be in (for mounts). */
export interface ExportedLayer {
  descriptor: Descriptor;
  diffId: Digest;
  sources: string[];
}

export interface ExportedCache {
  config: CacheConfig;
  /** The layer blobs, by digest. */
  layers: Map<Digest, ExportedLayer>;
  /** How many records have a result (what a test of min and max counts). */
  resultRecords: number;
}

type LayerContext = Pick<BuildContext, 'root' | 'content' | 'snapshotter' | 'records' | 'signal'>;

const DOCKER_LAYER: Record<string, string> = { gzip: MediaType.DockerLayerGzip, uncompressed: MediaType.DockerLayer };

function mediaTypeOf(compression: Compression, oci: boolean): string {
  if (oci) return { gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd, uncompressed: MediaType.OciLayer }[compression];
  const t = DOCKER_LAYER[compression];
  if (!t) throw new BktError('INVALID_ARGUMENT', 'zstd cache layers need OCI media types (oci-mediatypes=true)', { attribute: 'compression' });
  return t;
}

/** The snapshot's layer blob: the one it was unpacked from, else made from its changes. */
async function layerOf(s: Snapshot, ctx: LayerContext, opts: LayerExportOptions): Promise<ExportedLayer> {
  const rec = await readLayerRecord(requireRecords(ctx, '@bkt/cache-registry'), s.id);
  if (rec && (await ctx.content.has(rec.blob.digest))) {
    const { layer, converted } = await recordedLayer(rec, ctx, { ...opts, snapshotId: s.id });
    const have = compressionOfMediaType(layer.descriptor.mediaType);
    const mediaType = have ? mediaTypeOf(have, opts.ociMediaTypes) : layer.descriptor.mediaType;
    return { descriptor: { mediaType, digest: layer.descriptor.digest, size: layer.descriptor.size }, diffId: rec.diffId, sources: converted ? [] : rec.sources };
  }
  const layer = await snapshotLayer(s, ctx, { compression: opts.compression, compressionLevel: opts.compressionLevel });
  return { descriptor: { ...layer.descriptor, mediaType: mediaTypeOf(opts.compression, opts.ociMediaTypes) }, diffId: layer.diffId, sources: [] };
}

/** The snapshots from the base up to `top`. */
async function snapshotChain(top: Snapshot, ctx: LayerContext): Promise<Snapshot[]> {
  const chain: Snapshot[] = [];
  for (let s: Snapshot | null = top; s; s = s.parent ? await ctx.snapshotter.get(s.parent) : null) chain.unshift(s);
  return chain;
}

/** The records `mode` exports and, of those, the ones whose result it exports. */
async function selectRecords(chain: CacheChain, mode: CacheMode, ctx: LayerContext): Promise<{ keep: Set<number>; withResult: Set<number> }> {
  const all = chain.records.map((_, i) => i);
  if (mode === 'max') return { keep: new Set(all), withResult: new Set(all.filter((i) => chain.records[i].exportable)) };
  const keep = new Set<number>();
  const stack = [...chain.results];
  // A record reaches its inputs and its canonical record; records of the same vertex output go together.
  const sameOutput = new Map<string, number[]>();
  chain.records.forEach((r, i) => {
    const k = `${r.vertex.digest}#${r.vertex.output}`;
    sameOutput.set(k, [...(sameOutput.get(k) ?? []), i]);
  });
  while (stack.length > 0) {
    const i = stack.pop()!;
    if (keep.has(i)) continue;
    keep.add(i);
    const r = chain.records[i];
    for (const alts of r.inputs) for (const a of alts) stack.push(a.record);
    if (r.canonical !== undefined) stack.push(r.canonical);
    for (const j of sameOutput.get(`${r.vertex.digest}#${r.vertex.output}`) ?? []) stack.push(j);
  }
  // Results: the final ones, and those that are a layer prefix of a final one.
  const finalChains = new Set<string>();
  for (const i of chain.results) {
    const s = await chain.records[i].result();
    if (s) for (const p of await snapshotChain(s, ctx)) finalChains.add(p.id);
  }
  const withResult = new Set<number>();
  for (const i of keep) {
    const r = chain.records[i];
    if (!r.exportable) continue;
    if (chain.results.includes(i)) {
      withResult.add(i);
      continue;
    }
    const s = await r.result();
    if (s && finalChains.has(s.id)) withResult.add(i);
  }
  return { keep, withResult };
}

/**
 * The contents of the build's cache mounts (`cache-mounts=true`), each as a
 * layer of its directory (no parent), read while the mount is held.
 */
async function cacheMountLayers(chain: CacheChain, ctx: LayerContext, opts: LayerExportOptions): Promise<{ id: string; layer: ExportedLayer }[]> {
  const out: { id: string; layer: ExportedLayer }[] = [];
  if (!chain.cacheMounts) return out;
  const { ids, store } = chain.cacheMounts;
  for (const id of ids) {
    const held = await store.openCacheMount(id, ctx as BuildContext);
    if (!held) continue;
    try {
      const what = `cache mount ${id}`;
      const plain = digesting(layerTar(held.path, { withOpaque: false }));
      const { digest, size } = await ctx.content.write(compress(plain.chunks, opts.compression, opts.compressionLevel, what));
      out.push({ id, layer: { descriptor: { mediaType: mediaTypeOf(opts.compression, opts.ociMediaTypes), digest, size }, diffId: plain.digest(), sources: [] } });
    } finally {
      await held.release();
    }
  }
  return out;
}

/** The cache config and layer blobs of `chain` in `mode` (with `cacheMounts`, the build's cache mounts too). */
export async function exportCache(chain: CacheChain, mode: CacheMode, ctx: LayerContext, opts: LayerExportOptions & { cacheMounts?: boolean }): Promise<ExportedCache> {
  const { keep, withResult } = await selectRecords(chain, mode, ctx);
  const layers: CacheLayer[] = [];
  const layerIndex = new Map<string, number>(); // by snapshot id
  const blobs = new Map<Digest, ExportedLayer>();
  const made = new Map<string, Promise<ExportedLayer>>();
  const layerFor = (s: Snapshot) => {
    let p = made.get(s.id);
    if (!p) made.set(s.id, (p = layerOf(s, ctx, opts)));
    return p;
  };

  const order = [...keep].sort((a, b) => a - b);
  const newIndex = new Map(order.map((i, n) => [i, n]));
  const records: CacheConfigRecord[] = [];
  let resultRecords = 0;
  for (const i of order) {
    const r = chain.records[i];
    const rec: CacheConfigRecord = {
      digest: r.key,
      results: [],
      chains: [],
      inputs: r.inputs.map((alts) => alts.filter((a) => newIndex.has(a.record)).map((a) => ({ link: newIndex.get(a.record)!, ...(a.selector ? { selector: a.selector } : {}) }))),
      ...(r.canonical !== undefined && newIndex.has(r.canonical) ? { canonical: newIndex.get(r.canonical)! } : {}),
    };
    if (withResult.has(i)) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const s = await r.result();
      if (s === null) {
        rec.chains.push({ layers: [], createdAt: ZERO_TIME });
        resultRecords++;
      } else if (s !== undefined) {
        const snaps = await snapshotChain(s, ctx);
        // Layers are made in parallel (each snapshot once), then linked base first.
        const made = await Promise.all(snaps.map((x) => layerFor(x)));
        let parent = -1;
        snaps.forEach((x, n) => {
          let at = layerIndex.get(x.id);
          if (at === undefined) {
            const l = made[n];
            at = layers.length;
            layers.push({ blob: l.descriptor.digest, parent, annotations: { mediaType: l.descriptor.mediaType, diffID: l.diffId, size: l.descriptor.size, createdAt: timeOf(x) } });
            layerIndex.set(x.id, at);
            const prev = blobs.get(l.descriptor.digest);
            blobs.set(l.descriptor.digest, prev ? { ...prev, sources: [...new Set([...prev.sources, ...l.sources])] } : l);
          }
          parent = at;
        });
        rec.results.push({ layer: parent, createdAt: timeOf(s) });
        resultRecords++;
      }
    }
    records.push(rec);
  }
  const cacheMounts: { id: string; layer: number }[] = [];
  if (opts.cacheMounts) {
    for (const { id, layer: l } of await cacheMountLayers(chain, ctx, opts)) {
      cacheMounts.push({ id, layer: layers.length });
      layers.push({ blob: l.descriptor.digest, parent: -1, annotations: { mediaType: l.descriptor.mediaType, diffID: l.diffId, size: l.descriptor.size, createdAt: ZERO_TIME } });
      blobs.set(l.descriptor.digest, l);
    }
  }
  return { config: { layers, records, ...(cacheMounts.length > 0 ? { cacheMounts } : {}) }, layers: blobs, resultRecords };
}

/** The descriptor a cache manifest lists for a layer: its blob with the uncompressed digest annotation. */
export function manifestLayer(l: ExportedLayer): Descriptor {
  return { mediaType: l.descriptor.mediaType, digest: l.descriptor.digest, size: l.descriptor.size, annotations: { [UNCOMPRESSED_ANNOTATION]: l.diffId } };
}

/** A snapshot's commit time as the cache config writes it (BuildKit's `createdAt`), the zero time when unknown. */
function timeOf(s: { createdAt?: Date }): string {
  return s.createdAt && !Number.isNaN(s.createdAt.getTime()) ? s.createdAt.toISOString() : ZERO_TIME;
}
