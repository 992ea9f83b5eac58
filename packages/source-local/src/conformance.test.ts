import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeSourceConformance, type SourceFixture } from '@bkt/core/testing';
import { openTestContext } from '@bkt/store/testing';
import localSource from './index.js';

/** The `local` source over a client directory named `context`, in a real store. */
describeSourceConformance('local', async (): Promise<SourceFixture> => {
  const work = await mkdtemp(join(tmpdir(), 'bkt-source-local-conformance-'));
  const contextDir = join(work, 'context');
  await mkdir(join(contextDir, 'src/lib'), { recursive: true });
  await writeFile(join(contextDir, 'README.md'), '# hi\n');
  await writeFile(join(contextDir, 'src/lib/util.ts'), 'util');
  const store = await openTestContext({ localDirs: { context: contextDir } });
  return {
    source: localSource().sources![0]!,
    context: store.ctx,
    valid: {
      scheme: 'local',
      ref: 'context',
      attrs: { 'local.excludepatterns': JSON.stringify(['*.log']) },
      expect: { 'README.md': '# hi\n', src: null, 'src/lib/util.ts': 'util' },
    },
    invalid: [
      { scheme: 'local', ref: '', mentions: 'has no directory name' },
      { scheme: 'local', ref: 'context', attrs: { 'local.includepattern': 'not json' }, mentions: 'local.includepattern' },
      { scheme: 'local', ref: 'context', attrs: { 'local.nosuchattr': '1' }, mentions: 'local.nosuchattr' },
      { scheme: 'local', ref: 'context', attrs: { 'local.differ': 'sometimes' }, mentions: 'local.differ' },
    ],
    mutate: () => writeFile(join(contextDir, 'src/lib/util.ts'), 'util, changed'),
    cleanup: async () => {
      await store.close();
      await rm(work, { recursive: true, force: true });
    },
  };
});
