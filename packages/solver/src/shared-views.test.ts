import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BktPlugin, Snapshot, Source } from '@bkt/core';
import { DefBuilder, testPlugin, treeOf, solverPerTest } from './graphs.test-util.js';

const perTest = solverPerTest('bkt-shared-views-');

/** A source `two://x`: a snapshot of two layers (its view is an overlay mount), counting the views asked of it. */
function twoLayerSource(views: { count: number }): BktPlugin {
  const source: Source = {
    schemes: ['two'],
    identify: (scheme, ref, attrs, platform) => ({ scheme, ref, attrs, platform }),
    async resolve(id) {
      return {
        cacheKey: async () => ({ key: `sha256:${'ab'.repeat(32)}` }),
        async snapshot(ctx): Promise<Snapshot> {
          const lower = await ctx.snapshotter.prepare(null);
          await writeFile(join(lower.path, 'lower.txt'), 'lower');
          const upper = await ctx.snapshotter.prepare(await lower.commit());
          await writeFile(join(upper.path, 'file.txt'), id.ref);
          const snap = await upper.commit();
          return {
            ...snap,
            mount: () => {
              views.count++;
              return snap.mount();
            },
          };
        },
      };
    },
  };
  return { name: 'two-layer-source', sources: [source] };
}

describe('shared views', () => {
  it('a copy reads its source through the view its content checksum mounted, unmounted when the build ends', async () => {
    const views = { count: 0 };
    const s = await perTest.open([testPlugin(), twoLayerSource(views)]);
    const g = new DefBuilder();
    const base = g.mkfile(null, { '/base': 'base' });
    const top = g.copy(base, g.source('two://x'), '/file.txt', '/copied.txt');
    const r = await s.solve({ definition: g.build(top) });
    expect(await treeOf(r.result.ref)).toEqual({ base: 'base', 'copied.txt': 'x' });
    // The content checksum (the copy's cache key) and the copy itself: one view.
    expect(views.count).toBe(1);
    // solverPerTest checks that nothing is left mounted under the root.
  });
});
