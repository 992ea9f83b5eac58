/**
 * The part of LLB (proto package `pb`) that a Control `SolveRequest`
 * carries: `Definition` and its metadata (`OpMetadata`, `Source`,
 * `Locations`, …), `Platform`, `ProgressGroup`. The same objects as
 * `@bkt/api/pb`'s, without loading the codecs of the ops themselves (`Op`,
 * `ExecOp`, `FileOp`, …): what a client that only passes a definition on
 * (bkt's build through bktd) imports.
 */
export * from './gen/github.com/moby/buildkit/solver/pb/definition.js';
