/**
 * The inline cache (BuildKit's `moby.buildkit.cache.v0` image config key):
 * only the `records` array of a cache config, whose results index the
 * image's own layers. Written for `mode=min` (the final result's chain, whose
 * layers are the image's); read back by rebuilding the layers from the image
 * (`layers[i]` = the image's i-th layer, parent i-1, diff id from
 * `rootfs.diff_ids[i]`), as BuildKit's importer does.
 */
import { BktError, type Digest } from '@bkt/core';
import type { Descriptor } from '@bkt/oci';
import { normalizeCacheConfig, parseCacheConfig, serializeCacheConfig, ZERO_TIME, type CacheConfig } from './config.js';
import type { ExportedCache } from './export.js';

/**
 * The inline cache bytes of a min-mode export: records whose results are
 * layer prefixes of the final result (every result of a min export is),
 * with layer indexes counted from the image's base layer.
 */
export function inlineRecords(exported: ExportedCache): Uint8Array {
  // A linear chain keeps its order when normalised (a chain's key sorts before its children's).
  const normal = normalizeCacheConfig(exported.config);
  const linear = normal.layers.every((l, i) => l.parent === i - 1);
  if (!linear) {
    throw new BktError('INVALID_ARGUMENT', 'inline cache: the final result has several layer chains (a multi-platform result); use --cache-to type=registry');
  }
  // No times: they would make the image's config (its digest) depend on when its steps ran (SOURCE_DATE_EPOCH builds
  // must stay reproducible); the image's own history carries the dates.
  const undated: CacheConfig = { ...normal, layers: normal.layers.map((l) => ({ ...l, annotations: l.annotations && { ...l.annotations, createdAt: ZERO_TIME } })), records: normal.records.map((r) => ({ ...r, results: r.results.map((x) => ({ ...x, createdAt: ZERO_TIME })), chains: r.chains.map((x) => ({ ...x, createdAt: ZERO_TIME })) })) };
  const doc = JSON.parse(Buffer.from(serializeCacheConfig(undated)).toString('utf8')) as { records?: unknown[] };
  return new TextEncoder().encode(JSON.stringify(doc.records ?? []));
}

/** The cache config of an inline cache: its records over the image's layers. */
export function inlineConfig(records: Uint8Array, imageLayers: Descriptor[], imageConfig: Uint8Array, what: string): CacheConfig {
  let cfg: { rootfs?: { diff_ids?: unknown[] }; history?: { empty_layer?: boolean; created?: string }[] };
  try {
    cfg = JSON.parse(Buffer.from(imageConfig).toString('utf8'));
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `${what}: the image config is not JSON (${(err as Error).message})`);
  }
  const diffIds = cfg.rootfs?.diff_ids ?? [];
  if (diffIds.length !== imageLayers.length) {
    throw new BktError('INVALID_ARGUMENT', `${what}: the image has ${imageLayers.length} layers but ${diffIds.length} diff ids`);
  }
  const created = (cfg.history ?? []).filter((h) => !h.empty_layer).map((h) => h.created);
  let parsedRecords: unknown;
  try {
    parsedRecords = JSON.parse(Buffer.from(records).toString('utf8'));
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `${what}: the records are not JSON (${(err as Error).message})`);
  }
  const doc = {
    layers: imageLayers.map((d, i) => ({
      blob: d.digest,
      parent: i - 1,
      annotations: { mediaType: d.mediaType, diffID: diffIds[i] as Digest, size: d.size, ...(created[i] ? { createdAt: created[i] } : {}) },
    })),
    records: parsedRecords,
  };
  return parseCacheConfig(JSON.stringify(doc), what);
}
