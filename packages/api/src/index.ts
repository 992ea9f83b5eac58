/**
 * @bkt/api: message codecs and gRPC service definitions generated from the
 * proto files in <repo>/proto (BuildKit wire-compatible). Each proto package
 * is exposed as a namespace; every namespace is also a subpath export
 * (`@bkt/api/pb`, `@bkt/api/control`, …). See README.md.
 */

/** LLB, the build graph (proto package `pb`). */
export * as pb from './pb.js';
/** BuildKit control API (`moby.buildkit.v1`). */
export * as control from './control.js';
/** BuildKit gateway API (`moby.buildkit.v1.frontend`). */
export * as gateway from './gateway.js';
/** buildx controller API (`buildx.controller.v1`). */
export * as controller from './controller.js';
/** Image-builder service (`builder`). */
export * as imagebuilder from './imagebuilder.js';
/** Workspace content initializers (`contentservice`). */
export * as contentservice from './contentservice.js';
/** `google.protobuf` well-known types and `google.rpc.Status`. */
export * as google from './google.js';
/** fsutil file metadata (`fsutil.types`). */
export * as fsutil from './fsutil.js';
/** Shared BuildKit types (`moby.buildkit.v1.types`). */
export * as types from './types.js';
/** API capabilities (`moby.buildkit.v1.apicaps`). */
export * as apicaps from './apicaps.js';
/** Source policies (`moby.buildkit.v1.sourcepolicy`). */
export * as sourcepolicy from './sourcepolicy.js';
/** Session file transfer and registry auth (`moby.filesync.v1`): FileSync, FileSend, Auth. */
export * as filesync from './filesync.js';
/** Session secrets (`moby.buildkit.secrets.v1`). */
export * as secrets from './secrets.js';
/** Session SSH agent forwarding (`moby.sshforward.v1`). */
export * as sshforward from './sshforward.js';
/** gRPC health checking (`grpc.health.v1`). */
export * as health from './health.js';
