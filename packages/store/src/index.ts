/**
 * @bkt/store: the store under one root (content store, snapshotters,
 * metadata DB, build history, the records API for plugins, usage and prune),
 * shared by every process that opens it. See README.md.
 */
export { Store, CONTENT_RECORD_TYPE, treeBytes, type StorePruneOptions } from './store.js';
export { FileContentStore, type BlobInfo } from './content.js';
export { SCHEMA_VERSION, type CacheRecord } from './metadata.js';
export { BuildHistory, type BuildHistoryRecord, type BuildRecorder, type BuildStart, type HistoryLimits } from './history.js';
export {
  OverlaySnapshotter,
  CopySnapshotter,
  StoreSnapshotter,
  applyLayer,
  diffTrees,
  findWhiteouts,
  type ScopedSnapshotter,
  type SnapshotterKind,
  type PrepareOptions,
} from './snapshots.js';
export { mountsUnder } from './sys.js';
