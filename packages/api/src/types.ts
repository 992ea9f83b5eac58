/** BuildKit shared types (proto package `moby.buildkit.v1.types`): `WorkerRecord`, `GCPolicy`, `BuildkitVersion`. */
export * from './gen/github.com/moby/buildkit/api/types/worker.js';
