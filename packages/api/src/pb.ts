/** LLB, the build graph (proto package `pb`): Op, Definition, mounts, file actions. Same as the `pb` namespace of `@bkt/api`. */
export * from './gen/github.com/moby/buildkit/solver/pb/ops.js';
