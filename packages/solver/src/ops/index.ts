/**
 * The solver's built-in op executors as a plugin: `file` (FileOp), `merge`
 * (MergeOp) and `diff` (DiffOp). Exec comes from a worker plugin
 * (`@bkt/worker-runc`).
 */
import type { BktPlugin } from '@bkt/core';
import { createDiffOpExecutor } from './diff.js';
import { createFileOpExecutor } from './file/index.js';
import { createMergeOpExecutor } from './merge.js';

export function builtinOpsPlugin(): BktPlugin {
  return {
    name: '@bkt/solver/ops',
    opExecutors: [createFileOpExecutor(), createMergeOpExecutor(), createDiffOpExecutor()],
  };
}

export { createFileOpExecutor, fileContentSelectors, validateFileOp } from './file/index.js';
export { createMergeOpExecutor } from './merge.js';
export { createDiffOpExecutor, writeDiff } from './diff.js';
