/**
 * @bkt/store: the store under one root (content store, snapshotters,
 * metadata DB, build history, the records API for plugins, usage and prune),
 * shared by every process that opens it. See README.md.
 */
export { Store, type StorePruneOptions } from './store.js';
export { FileContentStore, type BlobInfo } from './content.js';
export type { CacheRecord } from './metadata.js';
export type { BuildHistoryRecord, BuildRecorder, BuildStart, HistoryLimits } from './history.js';
export type { ScopedSnapshotter, SnapshotterKind, PrepareOptions } from './snapshots.js';
