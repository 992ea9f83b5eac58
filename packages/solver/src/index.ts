export type * from './api.js';
export { openSolver } from './solver.js';
export { loadDefinition, buildGraph, decodeDefinition, digestOf, vertexName } from './definition.js';
export type { LoadedDefinition, Vertex, VertexInput, RawOp } from './definition.js';
/** The store moved to @bkt/store; re-exported here for code written against the solver (prefer @bkt/store). */
export { Store, CONTENT_RECORD_TYPE, FileContentStore, SCHEMA_VERSION, BuildHistory } from '@bkt/store';
export { OverlaySnapshotter, CopySnapshotter, StoreSnapshotter, applyLayer, diffTrees, findWhiteouts } from '@bkt/store';
export type { BlobInfo, BuildRecorder, BuildStart, SnapshotterKind, PrepareOptions } from '@bkt/store';
export { builtinOpsPlugin } from './ops/index.js';
