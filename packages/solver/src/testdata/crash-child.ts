/**
 * Child process of crash.test.ts: builds into a store until it is killed.
 * Usage: node --conditions=source --import jiti/register crash-child.ts ROOT CONTEXT_DIR
 * Prints `committed` after a first small build, then starts a large copy
 * build while writing blobs in a loop, and prints `copying`.
 */
import { randomBytes } from 'node:crypto';
import { createBkt } from '@bkt/core';
import { openSolver } from '../solver.js';
import { FileContentStore } from '@bkt/store';
import { DefBuilder, testPlugin } from '../graphs.test-util.js';
import { bigCopyGraph } from './graphs.js';

const [root, contextDir] = process.argv.slice(2);
const bkt = await createBkt([testPlugin()]);
const solver = await openSolver({ root, bkt });
const g = new DefBuilder();
await solver.solve({ definition: g.build(g.mkfile(null, { '/small': 'small' })) });
process.stdout.write('committed\n');

// Blobs written back to back while the big copy runs.
let blobs = 0;
void (async () => {
  const content = new FileContentStore(`${root}/content`);
  for (;;) {
    await content.write(randomBytes(1 << 20));
    blobs++;
  }
})();

process.stdout.write('copying\n');
await solver.solve({ definition: bigCopyGraph(), localDirs: { context: contextDir } });
process.stdout.write(`finished ${blobs}\n`);
