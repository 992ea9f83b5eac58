/**
 * @bkt/frontend-gateway: BuildKit's gateway.
 *
 * - `LLBBridgeSession` translates LLBBridge (`moby.buildkit.v1.frontend`)
 *   messages into calls of a build's `FrontendBridge` and keeps one
 *   frontend's refs, containers and returned result;
 * - `serveOverStream` serves a session over a duplex stream (a frontend
 *   container's stdio), `llbBridgeHandlers` + `lookupByBuildId` serve
 *   sessions on a daemon's endpoint (bktd's client-side frontends);
 * - `gatewayFrontend` is the `gateway.v0` frontend: a frontend image run in
 *   a container of the build;
 * - `grpcStatusOf` sends an error with BuildKit's typed details.
 *
 * The plugin (default export) registers `gateway.v0`.
 */
import type { BktPlugin } from '@bkt/core';
import { gatewayFrontend, type GatewayFrontendOptions } from './frontend.js';

export { LLBBridgeSession, type GatewayWorker, type LLBBridgeSessionOptions } from './session.js';
export { serveOverStream, llbBridgeHandlers, healthHandlers, lookupByBuildId, BUILD_ID_METADATA_KEY, MAX_MESSAGE_BYTES, type SessionLookup, type StreamServer } from './serve.js';
export {
  grpcStatusOf,
  statusDetailsOf,
  solveErrorDetail,
  vertexErrorDetail,
  withErrorDetails,
  errorDetailsOf,
  SOLVE_DETAIL_TYPE,
  VERTEX_DETAIL_TYPE,
  STATUS_DETAILS_KEY,
  type ErrorDetail,
} from './errors.js';
export { gatewayFrontend, isDockerfileFrontend, LABEL_CAPS, LABEL_NETWORK_NONE, METADATA_DIR, EXPORTED_PRODUCT, type GatewayFrontendOptions } from './frontend.js';
export { FRONTEND_CAPS, LLB_CAPS } from './caps.js';

export type FrontendGatewayOptions = GatewayFrontendOptions;

/** The plugin: registers the `gateway.v0` frontend. */
export default function frontendGateway(opts: FrontendGatewayOptions = {}): BktPlugin {
  return { name: '@bkt/frontend-gateway', frontends: [gatewayFrontend(opts)] };
}
