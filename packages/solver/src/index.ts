// The public surface: the solver entry, its options/request/result types
// (src/api.ts) and the built-in ops plugin. The store is @bkt/store's; the
// definition loader and the ops are internal.
export type * from './api.js';
export { openSolver } from './solver.js';
export { builtinOpsPlugin } from './ops/index.js';
export { explainStoredBuild } from './explain.js';
export type { StepExplanation } from './explain.js';
export { debugTarget, failedStepTarget, resultTarget, type DebugTarget } from './debug.js';
