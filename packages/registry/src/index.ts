/**
 * @bkt/registry: an OCI Distribution client (pull, push, auth, retries,
 * chunked upload, cross-repository mount, referrers, tags). References,
 * media types and descriptors are `@bkt/oci`'s.
 */
export { RegistryClient, referrersTag } from './client.js';
export type { BlobData, BlobSink, BlobTarget, FetchedManifest, PushBlobOptions, PushBlobResult, RefLike, RegistryClientOptions, RegistrySettings } from './client.js';
export { fileSink } from './sinks.js';
export { buildClientCredentials, dockerConfigCredentials, forBuildClient, staticCredentials } from './credentials.js';
export type { Credentials, CredentialsProvider } from './credentials.js';
export type { RegistryHostConfig, RegistryHostsConfig } from './hosts.js';
export type { RetryPolicy, StreamBody } from './http.js';
