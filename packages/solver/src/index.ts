export type * from './api.js';
export { openSolver } from './solver.js';
export { loadDefinition, buildGraph, decodeDefinition, digestOf, vertexName } from './definition.js';
export type { LoadedDefinition, Vertex, VertexInput, RawOp } from './definition.js';
export { Store } from './store/store.js';
export { FileContentStore } from './store/content.js';
export { OverlaySnapshotter, CopySnapshotter, StoreSnapshotter, applyLayer, diffTrees } from './store/snapshots.js';
export type { SnapshotterKind, PrepareOptions } from './store/snapshots.js';
export { builtinOpsPlugin } from './ops/index.js';
