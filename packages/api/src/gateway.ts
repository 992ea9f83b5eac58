/** BuildKit gateway API (proto package `moby.buildkit.v1.frontend`): service `LLBBridge`, spoken between the solver and a frontend. */
export * from './gen/github.com/moby/buildkit/frontend/gateway/pb/gateway.js';
