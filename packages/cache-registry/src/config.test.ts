import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { mergeCacheConfigs, normalizeCacheConfig, parseCacheConfig, recordResults, serializeCacheConfig, ZERO_TIME, type CacheConfig } from './config.js';
import { cacheImport } from './import.js';

const d = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}` as `sha256:${string}`;

/** A cache as BuildKit writes it: a base layer, a layer on it, a record per step linked to its input. */
const buildkitLike = {
  layers: [
    { blob: d('base'), parent: -1, annotations: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: d('base-diff'), size: 10, createdAt: '2025-01-01T00:00:00Z' } },
    { blob: d('run'), annotations: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: d('run-diff'), size: 20, createdAt: '2025-01-02T00:00:00Z' } },
  ],
  records: [
    { digest: d('key-from'), layers: [{ layer: 0, createdAt: '2025-01-01T00:00:00Z' }] },
    { digest: d('key-run'), layers: [{ layer: 1, createdAt: '2025-01-02T00:00:00Z' }], inputs: [[{ link: 0 }]] },
    { digest: d('key-copy'), chains: [{ layers: [1], createdAt: '2025-01-03T00:00:00Z' }], inputs: [[{ selector: d('sel'), link: 1 }]] },
  ],
};

function fail(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(isBktError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('did not throw');
}

describe('parseCacheConfig', () => {
  it("reads Go's encoding: a missing parent is 0, -1 is none; records' layers are results", () => {
    const c = parseCacheConfig(JSON.stringify(buildkitLike), 'test');
    expect(c.layers.map((l) => l.parent)).toEqual([-1, 0]);
    expect(recordResults(c, 1)).toEqual([{ layers: [0, 1], createdAt: '2025-01-02T00:00:00Z' }]);
    // A chain is its explicit list: no parent walk.
    expect(recordResults(c, 2)).toEqual([{ layers: [1], createdAt: '2025-01-03T00:00:00Z' }]);
    expect(c.records[2].inputs).toEqual([[{ selector: d('sel'), link: 1 }]]);
  });

  it('names the bad field', () => {
    const bad = (patch: (doc: any) => void) => {
      const doc = structuredClone(buildkitLike) as any;
      patch(doc);
      return fail(() => parseCacheConfig(JSON.stringify(doc), 'cache config X'));
    };
    expect(bad((doc) => (doc.records[1].inputs[0][0].link = 7))).toMatch(/^cache config X: invalid cache config: records\[1\]\.inputs\[0\]\[0\]\.link is 7/);
    expect(bad((doc) => (doc.layers[1].parent = 5))).toMatch(/layers\[1\]\.parent is 5/);
    expect(bad((doc) => (doc.records[0].digest = 'md5:x'))).toMatch(/records\[0\]\.digest is not a sha256 digest/);
    expect(bad((doc) => (doc.records[0].layers[0].layer = 2))).toMatch(/records\[0\]\.layers\[0\]\.layer is 2/);
    expect(bad((doc) => (doc.layers[0].parent = 1))).toMatch(/layers\[0\]: its parents form a cycle/);
    expect(fail(() => parseCacheConfig('{', 'cfg'))).toMatch(/cfg: invalid cache config: not JSON/);
  });

  it('has no 1 MiB limit: a 5 MiB config parses', () => {
    const records = [];
    // Each record is about 260 bytes.
    for (let i = 0; i < 21_000; i++) {
      records.push({ digest: d(`k${i}`), layers: [{ layer: 0, createdAt: ZERO_TIME }], inputs: i > 0 ? [[{ link: i - 1, selector: d(`s${i}`) }]] : [] });
    }
    const bytes = JSON.stringify({ layers: [{ blob: d('l'), parent: -1 }], records });
    expect(bytes.length).toBeGreaterThan(5 * 1024 * 1024);
    const t0 = performance.now();
    const c = parseCacheConfig(bytes, 'big');
    expect(c.records).toHaveLength(records.length);
    expect(performance.now() - t0).toBeLessThan(5000);
    // And it serialises back (normalised, sorted) without loss.
    expect(parseCacheConfig(serializeCacheConfig(c), 'again').records).toHaveLength(records.length);
    // The bound on the parse is the assertion above; the whole test (building, serialising, parsing twice) gets room on a loaded machine.
  }, 30_000);
});

describe('serializeCacheConfig', () => {
  it("writes Go's field order and omissions: parent left out when 0, createdAt, layer and link always", () => {
    const text = Buffer.from(serializeCacheConfig(parseCacheConfig(JSON.stringify(buildkitLike), 't'))).toString();
    const doc = JSON.parse(text);
    expect(Object.keys(doc)).toEqual(['layers', 'records']);
    expect(doc.layers[0]).toEqual({ blob: d('base'), parent: -1, annotations: buildkitLike.layers[0].annotations });
    expect('parent' in doc.layers[1]).toBe(false);
    const run = doc.records.find((r: any) => r.digest === d('key-run'));
    expect(Object.keys(run)).toEqual(['layers', 'digest', 'inputs']);
    expect(run.inputs[0][0]).toEqual({ link: doc.records.findIndex((r: any) => r.digest === d('key-from')) });
    // A chain that is exactly a layer and its parents is written as that layer.
    const copy = doc.records.find((r: any) => r.digest === d('key-copy'));
    expect(copy.chains).toEqual([{ layers: [1], createdAt: '2025-01-03T00:00:00Z' }]);
    expect(text).not.toMatch(/\s/);
  });

  it('serialises equal caches identically, whatever their order', () => {
    const a = parseCacheConfig(JSON.stringify(buildkitLike), 'a');
    // The same cache with layers and records listed the other way round.
    const b: CacheConfig = {
      layers: [
        { ...a.layers[1], parent: 1 },
        { ...a.layers[0], parent: -1 },
      ],
      records: [
        { ...a.records[2], chains: [{ layers: [0], createdAt: a.records[2].chains[0].createdAt }], inputs: [[{ ...a.records[2].inputs[0][0], link: 1 }]] },
        { ...a.records[1], results: [{ layer: 0, createdAt: a.records[1].results[0].createdAt }], inputs: [[{ link: 2 }]] },
        { ...a.records[0], results: [{ layer: 1, createdAt: a.records[0].results[0].createdAt }] },
      ],
    };
    expect(Buffer.from(serializeCacheConfig(b)).toString()).toBe(Buffer.from(serializeCacheConfig(a)).toString());
    // Normalising twice changes nothing.
    const once = normalizeCacheConfig(a);
    expect(normalizeCacheConfig(once)).toEqual(once);
  });

  it("keeps bkt's canonical link, which BuildKit's importer ignores", () => {
    const c = parseCacheConfig(JSON.stringify(buildkitLike), 'c');
    c.records[1].canonical = 2;
    const doc = JSON.parse(Buffer.from(serializeCacheConfig(c)).toString());
    const run = doc.records.find((r: any) => r.digest === d('key-run'));
    expect(doc.records[run['bkt.canonical']].digest).toBe(d('key-copy'));
    const back = parseCacheConfig(JSON.stringify(doc), 'back');
    const i = back.records.findIndex((r) => r.digest === d('key-run'));
    expect(back.records[back.records[i].canonical!].digest).toBe(d('key-copy'));
  });
});

describe('mergeCacheConfigs', () => {
  it("merges two runners' caches: shared layers and records once, each one's own kept", () => {
    const a = parseCacheConfig(JSON.stringify(buildkitLike), 'a');
    const other = parseCacheConfig(
      JSON.stringify({
        layers: [{ blob: d('base'), parent: -1 }, { blob: d('arm'), parent: 0 }],
        records: [{ digest: d('key-from'), layers: [{ layer: 0, createdAt: ZERO_TIME }] }, { digest: d('key-arm'), layers: [{ layer: 1, createdAt: ZERO_TIME }], inputs: [[{ link: 0 }]] }],
      }),
      'b',
    );
    const m = mergeCacheConfigs([a, other]);
    expect(m.layers.map((l) => l.blob).sort()).toEqual([d('arm'), d('base'), d('run')].sort());
    expect(m.records.map((r) => r.digest).sort()).toEqual([d('key-arm'), d('key-copy'), d('key-from'), d('key-run')].sort());
    // Merging is idempotent: a re-export of the same cache into the ref is the same bytes.
    expect(Buffer.from(serializeCacheConfig(mergeCacheConfigs([m, a]))).toString()).toBe(Buffer.from(serializeCacheConfig(m)).toString());
  });

  it('keeps a fast key\'s results with their own canonical key: two exports of one key with different contents are not mixed', () => {
    // Each export: record F (a fast key) stands for content-based key S_x, whose result is layer x.
    const exportOf = (canonical: string, blob: string): CacheConfig => ({
      layers: [{ blob: d(blob), parent: -1, annotations: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: d(`${blob}-diff`), size: 1 } }],
      records: [
        { digest: d('F'), results: [{ layer: 0, createdAt: ZERO_TIME }], chains: [], inputs: [], canonical: 1 },
        { digest: d(canonical), results: [{ layer: 0, createdAt: ZERO_TIME }], chains: [], inputs: [] },
      ],
    });
    const a = exportOf('S_A', 'bbbb');
    const b = exportOf('S_B', '1111');
    const pairing = (c: CacheConfig) => {
      const f = c.records.find((r) => r.digest === d('F'))!;
      return { canonical: c.records[f.canonical!].digest, blobs: f.results.map((r) => c.layers[r.layer].blob) };
    };
    // The newer export (the later config) decides, its results only.
    expect(pairing(mergeCacheConfigs([a, b]))).toEqual({ canonical: d('S_B'), blobs: [d('1111')] });
    expect(pairing(mergeCacheConfigs([b, a]))).toEqual({ canonical: d('S_A'), blobs: [d('bbbb')] });
    // An export whose record F has no result (the key structure only) does not take away another's result.
    const bare = exportOf('S_B', '1111');
    bare.records[0].results = [];
    expect(pairing(mergeCacheConfigs([a, bare]))).toEqual({ canonical: d('S_A'), blobs: [d('bbbb')] });
    // Both content-based records keep their own results.
    const m = mergeCacheConfigs([a, b]);
    for (const [key, blob] of [['S_A', 'bbbb'], ['S_B', '1111']]) {
      const r = m.records.find((x) => x.digest === d(key))!;
      expect(r.results.map((x) => m.layers[x.layer].blob)).toEqual([d(blob)]);
    }
    // The import of the merged cache pairs F's canonical key with that export's layer.
    const imp = cacheImport(parseCacheConfig(serializeCacheConfig(m), 'merged'), new Map(), { fetch: async () => undefined }, 'merged');
    expect(imp.lookup(d('F'))!.canonical).toBe(d('S_B'));
    // Same-canonical records still merge their results.
    const again = exportOf('S_A', 'cccc');
    expect(pairing(mergeCacheConfigs([a, again])).blobs.sort()).toEqual([d('bbbb'), d('cccc')].sort());
  });
});

describe("bkt.cacheMounts", () => {
  it('round-trips, remapped and sorted by ID; a merge keeps the newer of one ID', () => {
    const c = parseCacheConfig(JSON.stringify({ ...buildkitLike, 'bkt.cacheMounts': [{ id: 'z', layer: 1 }, { id: 'a', layer: 0 }] }), 'c');
    expect(c.cacheMounts).toEqual([{ id: 'z', layer: 1 }, { id: 'a', layer: 0 }]);
    const doc = JSON.parse(Buffer.from(serializeCacheConfig(c)).toString());
    expect(doc['bkt.cacheMounts'].map((m: any) => [m.id, doc.layers[m.layer].blob])).toEqual([['a', d('base')], ['z', d('run')]]);
    const newer: CacheConfig = { layers: [{ blob: d('newer'), parent: -1 }], records: [], cacheMounts: [{ id: 'a', layer: 0 }] };
    const m = mergeCacheConfigs([c, newer]);
    expect(m.cacheMounts!.map((x) => [x.id, m.layers[x.layer].blob])).toEqual([['a', d('newer')], ['z', d('run')]]);
    expect(fail(() => parseCacheConfig(JSON.stringify({ ...buildkitLike, 'bkt.cacheMounts': [{ id: 'a', layer: 9 }] }), 'x'))).toMatch(/bkt\.cacheMounts\[0\]\.layer is 9/);
  });
});

