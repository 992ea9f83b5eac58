import * as tapable from 'tapable';
import { describe, expect, it } from 'vitest';
import { createHooks, type SourcePolicyDecision } from './hooks.js';

describe('hooks', () => {
  it('are declared in lifecycle order and frozen', () => {
    const hooks = createHooks();
    expect(Object.keys(hooks)).toEqual([
      'storeOpen',
      'beforeSolve',
      'sourcePolicy',
      'vertexStart',
      'vertexLog',
      'vertexDone',
      'beforeExport',
      'attest',
      'afterSolve',
      'shutdown',
    ]);
    expect(Object.isFrozen(hooks)).toBe(true);
    expect(() => {
      (hooks as Record<string, unknown>).beforeSolve = null;
    }).toThrow(TypeError);
    expect(() => {
      (hooks as Record<string, unknown>).myHook = {};
    }).toThrow(TypeError);
  });

  it("are tapable's own hook classes, so a plugin taps them with tapable's API", () => {
    const hooks = createHooks();
    const kinds = Object.fromEntries(Object.entries(hooks).map(([name, hook]) => [name, hook.constructor]));
    expect(kinds).toEqual({
      storeOpen: tapable.AsyncSeriesHook,
      beforeSolve: tapable.AsyncSeriesWaterfallHook,
      sourcePolicy: tapable.AsyncSeriesBailHook,
      vertexStart: tapable.SyncHook,
      vertexLog: tapable.SyncHook,
      vertexDone: tapable.SyncHook,
      beforeExport: tapable.AsyncSeriesHook,
      attest: tapable.AsyncParallelHook,
      afterSolve: tapable.AsyncSeriesHook,
      shutdown: tapable.AsyncSeriesHook,
    });
  });

  it('fire taps in the order they were added', async () => {
    const hooks = createHooks();
    const order: string[] = [];
    hooks.shutdown.tapPromise('a', async () => {
      await new Promise((r) => setTimeout(r, 5));
      order.push('a');
    });
    hooks.shutdown.tap('b', () => {
      order.push('b');
    });
    await hooks.shutdown.promise();
    expect(order).toEqual(['a', 'b']);
  });

  it('beforeSolve is a waterfall: each tap gets the previous tap\'s definition', async () => {
    const hooks = createHooks();
    hooks.beforeSolve.tap('append1', (def) => new Uint8Array([...def, 1]));
    hooks.beforeSolve.tapPromise('append2', async (def, info) => {
      expect(info.buildId).toBe('b1');
      return new Uint8Array([...def, 2]);
    });
    const out = await hooks.beforeSolve.promise(new Uint8Array([0]), { buildId: 'b1', frontendAttrs: {} });
    expect([...out]).toEqual([0, 1, 2]);
  });

  it('sourcePolicy is a bail: the first answer wins, undefined defers', async () => {
    const hooks = createHooks();
    const seen: string[] = [];
    hooks.sourcePolicy.tap('defer', () => {
      seen.push('defer');
      return undefined;
    });
    hooks.sourcePolicy.tap('deny-http', (req): SourcePolicyDecision | undefined => {
      seen.push('deny-http');
      return req.identifier.startsWith('https://') ? { action: 'deny', reason: 'no http' } : undefined;
    });
    hooks.sourcePolicy.tap('never-reached-for-http', () => {
      seen.push('last');
      return { action: 'allow' };
    });
    expect(await hooks.sourcePolicy.promise({ identifier: 'https://x/y', attrs: {} })).toEqual({
      action: 'deny',
      reason: 'no http',
    });
    expect(seen).toEqual(['defer', 'deny-http']);
    expect(await hooks.sourcePolicy.promise({ identifier: 'local://context', attrs: {} })).toEqual({ action: 'allow' });
    const none = createHooks();
    expect(await none.sourcePolicy.promise({ identifier: 'local://c', attrs: {} })).toBeUndefined();
  });

  it('attest runs producers in parallel and collects their attestations', async () => {
    const hooks = createHooks();
    const started: string[] = [];
    for (const kind of ['provenance', 'sbom']) {
      hooks.attest.tapPromise(kind, async (_result, out) => {
        started.push(kind);
        await new Promise((r) => setTimeout(r, 20));
        // both started before either finished: they run in parallel
        expect(started).toEqual(['provenance', 'sbom']);
        out.push({ kind, predicateType: `https://example/${kind}`, payload: new Uint8Array() });
      });
    }
    const atts: { kind: string }[] = [];
    await hooks.attest.promise({ ref: null, metadata: {} }, atts as never);
    expect(atts.map((a) => a.kind).sort()).toEqual(['provenance', 'sbom']);
  });
});
