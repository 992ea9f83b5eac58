import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import * as tapable from 'tapable';
import { describe, expect, it } from 'vitest';
import { hookClasses, loadHookClasses } from './tapable-hooks.js';

const realRequire = createRequire(import.meta.url);

describe('loadHookClasses', () => {
  it("loads tapable's own classes from their files, not tapable's index", () => {
    const asked: string[] = [];
    const classes = loadHookClasses((id) => {
      asked.push(id);
      return realRequire(id);
    });
    expect(asked).not.toContain('tapable');
    expect(asked).toContain('tapable/lib/SyncHook.js');
    expect(classes.SyncHook).toBe(tapable.SyncHook);
    expect(classes.AsyncSeriesWaterfallHook).toBe(tapable.AsyncSeriesWaterfallHook);
    expect(hookClasses.AsyncParallelHook).toBe(tapable.AsyncParallelHook);
  });

  it('falls back to the main entry when an "exports" map hides the files, or they are gone', () => {
    for (const code of ['ERR_PACKAGE_PATH_NOT_EXPORTED', 'MODULE_NOT_FOUND']) {
      const classes = loadHookClasses((id) => {
        if (id !== 'tapable') throw Object.assign(new Error(`cannot resolve ${id}`), { code });
        return realRequire(id);
      });
      expect(classes).toEqual({
        AsyncParallelHook: tapable.AsyncParallelHook,
        AsyncSeriesBailHook: tapable.AsyncSeriesBailHook,
        AsyncSeriesHook: tapable.AsyncSeriesHook,
        AsyncSeriesWaterfallHook: tapable.AsyncSeriesWaterfallHook,
        SyncHook: tapable.SyncHook,
      });
      const hook = new classes.SyncHook<[number]>(['n']);
      const seen: number[] = [];
      hook.tap('t', (n) => void seen.push(n));
      hook.call(7);
      expect(seen).toEqual([7]);
    }
  });

  it('passes on an error that is not a resolution failure, and names a class the main entry lacks', () => {
    expect(() => loadHookClasses(() => { throw new SyntaxError('broken'); })).toThrow('broken');
    const hidden = Object.assign(new Error('hidden'), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
    expect(() => loadHookClasses((id) => {
      if (id !== 'tapable') throw hidden;
      return { SyncHook: tapable.SyncHook };
    })).toThrow(/no AsyncParallelHook/);
  });

  it('load in a CommonJS bundle of core (no import.meta.url there), as a frontend bundled with esbuild has', () => {
    // Outside any node_modules tree: the bundle must hold tapable itself, as a frontend image's does.
    const dir = mkdtempSync(join(tmpdir(), 'bkt-core-cjs-'));
    try {
      const out = join(dir, 'hooks.cjs');
      const { outputFiles } = buildSync({
        entryPoints: [join(import.meta.dirname, 'hooks.ts')],
        bundle: true,
        platform: 'node',
        format: 'cjs',
        write: false,
        logLevel: 'silent',
      });
      writeFileSync(out, outputFiles[0]!.text);
      const bundled = createRequire(join(import.meta.dirname, 'hooks.ts'))(out) as { createHooks: () => Record<string, unknown> };
      expect(Object.keys(bundled.createHooks()).length).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
