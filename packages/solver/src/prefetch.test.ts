/**
 * Sources started ahead: a source the cache lacks (an image not in the store)
 * starts its work while other vertices compute their keys (a context's sync
 * and checksums), and only then: a cached source, an imported result or a
 * source whose cache the build ignores is never started ahead.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BktError, isBktError, type BktPlugin, type CacheImport, type Digest, type Snapshot, type Source } from '@bkt/core';
import { DefBuilder, sleep, solverPerTest, testPlugin, treeOf } from './graphs.test-util.js';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}` as Digest;

/** What the fake sources did, in order, with performance.now() times. */
interface Trace {
  events: { what: string; at: number }[];
  pulls: number;
  pullAborted: number;
}

function at(t: Trace, what: string): number {
  const e = t.events.find((x) => x.what === what);
  if (!e) throw new Error(`no event ${what} in ${t.events.map((x) => x.what).join(', ')}`);
  return e.at;
}

interface FakeOptions {
  /** How long an `img://` snapshot (the pull) takes. */
  pullMs: number;
  /** How long a `ctx://` key (the sync and checksums) takes. */
  keyMs: number;
  /** The `ctx://` key fails with this after its delay. */
  keyError?: () => Error;
}

/**
 * `img://NAME`: resolves at once to a fixed key; its snapshot (the pull)
 * sleeps `pullMs` and writes `/img`. `ctx://NAME`: its key (what a local
 * source's sync and checksums take) sleeps `keyMs`, then hashes the client
 * directory's file `f`; its snapshot holds `/f`.
 */
function fakeSources(t: Trace, o: FakeOptions): BktPlugin {
  const img: Source = {
    schemes: ['img'],
    identify: (scheme, ref, attrs, platform) => ({
      scheme,
      ref,
      attrs,
      platform,
    }),
    async resolve(id) {
      return {
        cacheKey: async () => ({ key: sha(`img:${id.ref}`) }),
        async snapshot(ctx): Promise<Snapshot> {
          t.pulls++;
          t.events.push({ what: 'pull-start', at: performance.now() });
          const mut = await ctx.snapshotter.prepare(null, {
            description: `img://${id.ref}`,
          });
          try {
            await sleep(o.pullMs, ctx.signal);
            await writeFile(join(mut.path, 'img'), id.ref);
            const snap = await mut.commit();
            t.events.push({ what: 'pull-done', at: performance.now() });
            return snap;
          } catch (err) {
            if (ctx.signal.aborted) t.pullAborted++;
            await mut.discard();
            throw err;
          }
        },
      };
    },
  };
  const ctxSource: Source = {
    schemes: ['ctx'],
    identify: (scheme, ref, attrs, platform) => ({
      scheme,
      ref,
      attrs,
      platform,
    }),
    async resolve(id, bctx) {
      const dir = bctx.client.localDir(id.ref)!;
      const read = async () => {
        const parts: Uint8Array[] = [];
        for await (const c of dir.read('f')) parts.push(c);
        return Buffer.concat(parts);
      };
      return {
        async cacheKey(ctx) {
          t.events.push({ what: 'ctx-key-start', at: performance.now() });
          await sleep(o.keyMs, ctx.signal);
          if (o.keyError) throw o.keyError();
          const key = sha(`ctx:${(await read()).toString('hex')}`);
          t.events.push({ what: 'ctx-key-done', at: performance.now() });
          return { key };
        },
        async snapshot(ctx): Promise<Snapshot> {
          const mut = await ctx.snapshotter.prepare(null, {
            description: `ctx://${id.ref}`,
          });
          await writeFile(join(mut.path, 'f'), await read());
          return mut.commit();
        },
      };
    },
  };
  return { name: 'prefetch-test-sources', sources: [img, ctxSource] };
}

/** FROM img://busybox + COPY f from the context: the copy reads the context by content (a slow key). */
function fromAndCopy(opts: { ignoreImageCache?: boolean } = {}): {
  def: Uint8Array;
  image: string;
} {
  const g = new DefBuilder();
  const image = opts.ignoreImageCache
    ? g.add(
        {
          op: {
            $case: 'source',
            value: { identifier: 'img://busybox', attrs: {} },
          },
        },
        { ignoreCache: true }
      )
    : g.source('img://busybox');
  const ctx = g.source('ctx://context');
  return { def: g.build(g.copy(image, ctx, '/f', '/ctx/f')), image };
}

describe('sources started ahead', () => {
  const t = solverPerTest('bkt-prefetch-');
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-prefetch-ctx-'));
    await writeFile(join(dir, 'f'), 'one');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const trace = (): Trace => ({ events: [], pulls: 0, pullAborted: 0 });

  it('a cold build pulls its image while the context computes its key; a warm build pulls nothing', async () => {
    const tr = trace();
    const s = await t.open([testPlugin(), fakeSources(tr, { pullMs: 400, keyMs: 400 })]);
    const { def } = fromAndCopy();
    const t0 = performance.now();
    const r = await s.solve({ definition: def, localDirs: { context: dir } });
    const wall = performance.now() - t0;
    expect(await treeOf(r.result.ref)).toEqual({
      img: 'busybox',
      'ctx/f': 'one',
    });
    // The pull started before the context's key was known, and the two overlapped.
    expect(at(tr, 'pull-start')).toBeLessThan(at(tr, 'ctx-key-done'));
    expect(at(tr, 'ctx-key-start')).toBeLessThan(at(tr, 'pull-done'));
    expect(wall).toBeLessThan(800 + 300);
    expect(tr.pulls).toBe(1);

    // Warm, nothing changed: nothing pulled.
    const again = await s.solve({
      definition: def,
      localDirs: { context: dir },
    });
    expect(again.stats.cached).toBe(again.stats.vertices);
    // The context changed: the copy runs again, over the image the store holds.
    await writeFile(join(dir, 'f'), 'two');
    const changed = await s.solve({
      definition: def,
      localDirs: { context: dir },
    });
    expect(await treeOf(changed.result.ref)).toEqual({
      img: 'busybox',
      'ctx/f': 'two',
    });
    expect(tr.pulls).toBe(1);
  });

  it('a failed key stops the pull started ahead and leaves no snapshot of it', async () => {
    const tr = trace();
    const s = await t.open([
      testPlugin(),
      fakeSources(tr, {
        pullMs: 5_000,
        keyMs: 200,
        keyError: () => new BktError('NOT_FOUND', 'context: f is gone'),
      }),
    ]);
    const t0 = performance.now();
    const err = await s.solve({ definition: fromAndCopy().def, localDirs: { context: dir } }).catch((e: unknown) => e);
    expect(isBktError(err, 'NOT_FOUND')).toBe(true);
    expect((err as Error).message).toMatch(/f is gone/);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(tr.pulls).toBe(1);
    expect(tr.pullAborted).toBe(1);
    // Nothing of the pull is left in the store (the solver's afterEach checks mounts).
    const usage = await s.diskUsage();
    expect(usage.filter((u) => u.description === 'img://busybox')).toEqual([]);
  });

  it('an imported result wins over a pull: with cache imports, the image waits to be asked', async () => {
    const tr = trace();
    const imageKey = sha(JSON.stringify(['source', 'img', sha('img:busybox')]));
    let loads = 0;
    // An import holding every key but the image's (the copy's result is imported: a tree of its own).
    const lookup: CacheImport['lookup'] = (key) =>
      key === imageKey
        ? undefined
        : {
            canonical: key,
            load: async (ctx) => {
              loads++;
              const mut = await ctx.snapshotter.prepare(null, { description: 'imported' });
              await writeFile(join(mut.path, 'imported'), 'yes');
              return mut.commit();
            },
          };
    const s = await t.open([
      testPlugin(),
      fakeSources(tr, { pullMs: 200, keyMs: 200 }),
      {
        name: 'fake-cache',
        cacheBackends: [
          {
            type: 'fake',
            importer: async () => ({
              load: async () => ({ description: 'fake', lookup }),
            }),
          },
        ],
      },
    ]);
    const r = await s.solve({
      definition: fromAndCopy().def,
      localDirs: { context: dir },
      cacheImports: [{ type: 'fake', attrs: {} }],
    });
    expect(await treeOf(r.result.ref)).toEqual({ imported: 'yes' });
    expect(loads).toBeGreaterThan(0);
    expect(tr.pulls).toBe(0);

    // Without the import, the store holds the copy (recorded from the import) but not the image:
    // the image is still not started ahead, the build is all cached.
    const again = await s.solve({ definition: fromAndCopy().def, localDirs: { context: dir } });
    expect(await treeOf(again.result.ref)).toEqual({ imported: 'yes' });
    expect(again.stats.cached).toBe(again.stats.vertices);
    expect(tr.pulls).toBe(0);
  });

  it('a source whose cache the build ignores is not started ahead when what reads it is cached', async () => {
    const tr = trace();
    const s = await t.open([testPlugin(), fakeSources(tr, { pullMs: 100, keyMs: 100 })]);
    await s.solve({
      definition: fromAndCopy({ ignoreImageCache: true }).def,
      localDirs: { context: dir },
    });
    expect(tr.pulls).toBe(1);
    // The copy's record stands: the ignored image is not pulled again.
    const again = await s.solve({
      definition: fromAndCopy({ ignoreImageCache: true }).def,
      localDirs: { context: dir },
    });
    expect(await treeOf(again.result.ref)).toEqual({
      img: 'busybox',
      'ctx/f': 'one',
    });
    expect(tr.pulls).toBe(1);
  });

  it('--no-cache pulls ahead too (everything runs)', async () => {
    const tr = trace();
    const s = await t.open([testPlugin(), fakeSources(tr, { pullMs: 300, keyMs: 300 })]);
    await s.solve({
      definition: fromAndCopy().def,
      localDirs: { context: dir },
    });
    tr.events.length = 0;
    const r = await s.solve({
      definition: fromAndCopy().def,
      localDirs: { context: dir },
      noCache: true,
    });
    expect(await treeOf(r.result.ref)).toEqual({
      img: 'busybox',
      'ctx/f': 'one',
    });
    expect(tr.pulls).toBe(2);
    expect(at(tr, 'pull-start')).toBeLessThan(at(tr, 'ctx-key-done'));
  });
});
