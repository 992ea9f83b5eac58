/** gRPC health checking (proto package `grpc.health.v1`): service `Health` (Check, Watch). A session's client serves it. */
export * from './gen/grpc/health/v1/health.js';
