/** An internal solve (control.proto's `Internal`) runs as any other but leaves no build history. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createBkt, type ProgressEvent } from '@bkt/core';
import type { Solver } from './api.js';
import { openSolver } from './solver.js';
import { DefBuilder, testPlugin } from './graphs.test-util.js';

let root: string;
let solver: Solver;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-internal-'));
  solver = await openSolver({ root, bkt: await createBkt([testPlugin()]) });
});

afterEach(async () => {
  await solver.close();
  await rm(root, { recursive: true, force: true });
});

it('an internal solve reports its progress but is not recorded; a normal one is', async () => {
  const g = new DefBuilder();
  const def = g.build(g.mkfile(null, { '/out': 'x' }));
  const events: ProgressEvent[] = [];
  await solver.solve({ definition: def, buildId: 'internal1', internal: true, onProgress: (e) => events.push(e) });
  expect(events.some((e) => e.type === 'vertex')).toBe(true);
  expect(await solver.listBuilds({ ref: 'internal1' })).toEqual([]);
  await solver.solve({ definition: def, buildId: 'recorded1' });
  expect((await solver.listBuilds({ ref: 'recorded1' })).map((b) => b.status)).toEqual(['completed']);
});
