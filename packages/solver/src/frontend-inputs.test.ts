/** A solve request's frontend inputs (control.proto's FrontendInputs) reach its frontend or build function as `bridge.inputs`. */
import { describe, expect, it } from 'vitest';
import { isBktError, type BktPlugin, type FrontendBridge } from '@bkt/core';
import { DefBuilder, solverPerTest, testPlugin, treeOf } from './graphs.test-util.js';

describe('frontend inputs', () => {
  const t = solverPerTest('bkt-frontend-inputs-');

  /** Solves the input named by attr `input`; records what the bridge offered. */
  let offered: FrontendBridge['inputs'];
  const frontend: BktPlugin = {
    name: 'test-inputs-frontend',
    frontends: [
      {
        name: 'inputs.v0',
        async solve(attrs, bridge) {
          offered = bridge.inputs;
          const def = attrs.input ? bridge.inputs?.[attrs.input] : undefined;
          return def ? bridge.solve(def) : { ref: null, metadata: {} };
        },
      },
    ],
  };

  const fileDef = (content: string) => {
    const g = new DefBuilder();
    return g.build(g.mkfile(null, { '/input': content }));
  };

  it('the frontend sees each input by name, as given, and can solve it', async () => {
    const s = await t.open([testPlugin(), frontend]);
    const context = fileDef('the context');
    const other = fileDef('another');
    const r = await s.solve({ frontend: 'inputs.v0', frontendAttrs: { input: 'context' }, frontendInputs: { context, other } });
    expect(offered).toEqual({ context, other });
    expect(Object.isFrozen(offered)).toBe(true);
    expect(await treeOf(r.result.ref)).toEqual({ input: 'the context' });

    await s.solve({ frontend: 'inputs.v0' });
    expect(offered).toEqual({});
  });

  it("a build function's bridge carries them too", async () => {
    const s = await t.open([testPlugin()]);
    const r = await s.solve({ build: (bridge) => bridge.solve(bridge.inputs!.ctx!), frontendInputs: { ctx: fileDef('from a build function') } });
    expect(await treeOf(r.result.ref)).toEqual({ input: 'from a build function' });
  });

  it('are refused with a definition (nothing would read them), naming them', async () => {
    const s = await t.open([testPlugin()]);
    const err = await s.solve({ definition: fileDef('x'), frontendInputs: { context: fileDef('y'), dockerfile: fileDef('z') } }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe('frontend inputs (context, dockerfile) are for a frontend or a build function; this solve request has neither');
  });
});
