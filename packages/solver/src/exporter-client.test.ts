/**
 * Each exporter's outputs are tagged with its index in the solve request
 * (`OutputOptions.exporter`), so a client serving several outputs of one
 * type (a daemon's session: BuildKit's exporter ids) knows which is which.
 */
import { PassThrough } from 'node:stream';
import { expect, it } from 'vitest';
import { emptyClient, type BktPlugin, type BuildClient, type OutputOptions } from '@bkt/core';
import { builtinOpsPlugin } from './ops/index.js';
import { DefBuilder, solverPerTest } from './graphs.test-util.js';

const perTest = solverPerTest('bkt-exporter-client-');

it('tags every output an exporter opens with its index, whatever the type', async () => {
  const opened: { kind: string; dest?: string; options: OutputOptions }[] = [];
  const sink = async () => ({ stream: new PassThrough().resume(), commit: async () => {}, abort: async () => {} });
  const client: BuildClient = {
    ...emptyClient(),
    openFile: async (dest, options) => (opened.push({ kind: 'file', dest, options }), sink()),
    openStdout: async (options) => (opened.push({ kind: 'stdout', options }), sink()),
    openDir: async (dest, options) => (opened.push({ kind: 'dir', dest, options }), { write: async () => {}, commit: async () => {} }),
  };
  const writer: BktPlugin = {
    name: 'writer',
    exporters: [
      {
        type: 'write',
        resolve: async (attrs) => ({
          async export(_result, ctx) {
            const out = attrs.to === 'dir' ? await ctx.client.openDir(attrs.dest!, { what: 'write exporter' }) : await ctx.client.openFile(attrs.dest!, { what: 'write exporter' });
            await out.commit();
            if (attrs.to !== 'dir') await ctx.client.openStdout({ what: 'write exporter' }).then((o) => o.commit());
            return {};
          },
        }),
      },
    ],
  };
  const solver = await perTest.open([builtinOpsPlugin(), writer]);
  const def = new DefBuilder();
  await solver.solve({
    definition: def.build(def.mkfile(null, { '/a': 'a' })),
    client,
    exporters: [
      { type: 'write', attrs: { to: 'file', dest: 'one' } },
      { type: 'write', attrs: { to: 'dir', dest: 'two' } },
      { type: 'write', attrs: { to: 'file', dest: 'three' } },
    ],
  });
  expect(opened.map((o) => [o.kind, o.dest, o.options.exporter])).toEqual([
    ['file', 'one', 0],
    ['stdout', undefined, 0],
    ['dir', 'two', 1],
    ['file', 'three', 2],
    ['stdout', undefined, 2],
  ]);
});
