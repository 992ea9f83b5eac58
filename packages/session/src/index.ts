/**
 * @bkt/session: BuildKit's session protocol. The client's services travel
 * over `Control.Session` with the roles inverted: the client serves gRPC
 * over the stream, the daemon is its HTTP/2 client. See README.md.
 */

// The client's side: serve a BuildClient's services over a session.
export { serveSession, openSession } from './client/serve.js';
export type { SessionServer, SessionServerOptions, SessionDialer, OpenSession } from './client/serve.js';
export type { OutputTarget, OutputTargets } from './client/filesend.js';

// The daemon's side: sessions by id, and the client seam over one.
export { SessionManager } from './daemon/manager.js';
export type { GetSessionOptions } from './daemon/manager.js';
export { Session, DEFAULT_HEALTH_CHECK, healthCheckOf } from './daemon/session.js';
export type { HealthCheckConfig } from './daemon/session.js';
export { sessionBuildClient } from './daemon/build-client.js';
export type { SessionBuildClient, SessionBuildClientOptions } from './daemon/build-client.js';
export type { OutputTargetRef } from './daemon/outputs.js';

// Both ends: the tunnel, the caller, the header names.
export { tunnelOf } from './tunnel.js';
export type { BytesMessageCall } from './tunnel.js';
export { SessionCaller } from './grpc/caller.js';
export { bytesMessageTunnel } from './grpc/bytes-tunnel.js';
export type { BidiStream, CallOptions, MethodDefinition } from './grpc/caller.js';
export { CallError, Status, statusName } from './grpc/status.js';
export {
  HEADER_SESSION_ID,
  HEADER_SESSION_SHARED_KEY,
  HEADER_SESSION_METHOD,
  HEADER_HEALTH_CUSTOM_TIMEOUT,
  methodURL,
} from './headers.js';
export { goModeOf, stModeOf } from './filemode.js';

// Both ends: a build's progress as Control.Status streams it.
export { statusResponse, progressEvents, timestamp } from './progress.js';
