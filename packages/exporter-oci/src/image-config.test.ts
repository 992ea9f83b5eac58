import { describe, expect, it } from 'vitest';
import type { Digest } from '@bkt/core';
import { imageConfig, type ImageLayer, type ResultPlatform } from './image.js';

const layer = (n: number, createdAt?: Date): ImageLayer => ({
  descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${String(n).repeat(64)}` as Digest, size: n },
  diffId: `sha256:${String(n + 1).repeat(64)}` as Digest,
  sources: [],
  snapshotId: `s${n}`,
  ...(createdAt ? { createdAt } : {}),
});

/** A Dockerfile's config over a base of one layer: the base's dated entry, then ENV, COPY (a layer), CMD. */
const platform: ResultPlatform = {
  platform: { os: 'linux', architecture: 'amd64' },
  snapshot: null,
  config: Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['A=1'] },
      history: [
        { created: '2020-01-01T00:00:00Z', created_by: 'ADD rootfs' },
        { created_by: 'ENV A=1', empty_layer: true },
        { created_by: 'COPY . /ctx # buildkit' },
        { created_by: 'CMD ["sh"]', empty_layer: true },
      ],
    }),
  ),
};

const parse = (b: Uint8Array) => JSON.parse(Buffer.from(b).toString()) as { created: string; history: { created?: string; created_by: string }[] };

describe('imageConfig dates, as BuildKit', () => {
  it("dates a new layer's entry by its snapshot's commit time, the entries around it alike, and the config by the last entry", () => {
    const copied = new Date('2026-12-05T10:00:00.123Z');
    const c = parse(imageConfig(platform, [layer(1, new Date('2020-01-01T00:00:00Z')), layer(2, copied)], {}));
    expect(c.history.map((h) => h.created)).toEqual(['2020-01-01T00:00:00Z', copied.toISOString(), copied.toISOString(), copied.toISOString()]);
    expect(c.created).toBe(copied.toISOString());
  });

  it('makes the same config when the same snapshots are exported again later (a rebuild from the cache)', async () => {
    const layers = [layer(1, new Date('2020-01-01T00:00:00Z')), layer(2, new Date('2026-12-05T10:00:00Z'))];
    const first = Buffer.from(imageConfig(platform, layers, {}));
    await new Promise((r) => setTimeout(r, 5));
    expect(Buffer.from(imageConfig(platform, layers, {})).equals(first)).toBe(true);
  });

  it('dates by the export time a layer whose snapshot has no commit time, and keeps SOURCE_DATE_EPOCH first', () => {
    const before = Date.now();
    const c = parse(imageConfig(platform, [layer(1), layer(2)], {}));
    expect(Date.parse(c.history[2]!.created!)).toBeGreaterThanOrEqual(before - 1);
    expect(c.history[0]!.created).toBe('2020-01-01T00:00:00Z');
    const e = parse(imageConfig(platform, [layer(1), layer(2, new Date('2026-12-05T10:00:00Z'))], { sourceDateEpoch: 1_700_000_000 }));
    expect(e.created).toBe('2023-11-14T22:13:20Z');
    expect(e.history.map((h) => h.created)).toEqual(['2020-01-01T00:00:00Z', '2023-11-14T22:13:20Z', '2023-11-14T22:13:20Z', '2023-11-14T22:13:20Z']);
  });

  it('leaves an image of no layer undated (its digest does not depend on the export time)', () => {
    const empty: ResultPlatform = { ...platform, config: Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, history: [{ created_by: 'LABEL a=b', empty_layer: true }] })) };
    const c = parse(imageConfig(empty, [], {}));
    expect(c).not.toHaveProperty('created');
    expect(c.history[0]).not.toHaveProperty('created');
  });
});
