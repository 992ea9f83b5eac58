/**
 * @bkt/llb: build LLB graphs in TypeScript, mirroring BuildKit's Go `llb`
 * package, and marshal them to a `pb.Definition`.
 */
export { State, ExecState, type StateMeta } from './state.js';
export { EnvList } from './envlist.js';
export { scratch, image, local, git, http, ociLayout, SourceOp } from './source.js';
export type { ImageOptions, ResolvedImageOptions, LocalOptions, GitOptions, HttpOptions, OciLayoutOptions } from './source.js';
export { mkdir, mkfile, rm, copy, FileAction, FileActionWithState, FileOp } from './fileop.js';
export type { Chown, Timestamp, MkdirOptions, MkfileOptions, RmOptions, CopyOptions } from './fileop.js';
export { ExecOp } from './exec.js';
export type {
  RunOptions, Mount, BindMount, CacheMount, TmpfsMount, SecretMount, SshMount,
  NetworkMode, SecurityMode, UlimitName, CacheSharing, ContentCache,
} from './exec.js';
export { merge, diff, MergeOp, DiffOp } from './mergediff.js';
export { fromDefinition, DefinitionOp } from './definition-op.js';
export { MAX_DEFINITION_BYTES, marshal, marshalBytes, marshalPaced, definitionHead, encodeReturnOp, type MarshalOptions } from './marshal.js';
export type { OpOptions, OpMetadata } from './constraints.js';
export { SourceMap, type SourceLocation, type Range } from './sourcemap.js';
export { Output, Vertex } from './vertex.js';
export { shlexSplit } from './shlex.js';
export { cleanPath, joinPath, normalizeActionPath } from './paths.js';
