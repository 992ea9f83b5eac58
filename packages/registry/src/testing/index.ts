/**
 * @bkt/registry/testing: real-registry test helpers — Debian's docker-registry
 * on a loopback port, and a fault-injecting proxy to put in front of it.
 */
export { DOCKER_REGISTRY_BINARY, startRegistry } from './registry-server.js';
export type { RegistryServer, RegistryServerOptions } from './registry-server.js';
export { startFaultProxy } from './fault-proxy.js';
export type { Fault, FaultKind, FaultProxy, ProxiedRequest } from './fault-proxy.js';
export { startTokenServer, TOKEN_ISSUER, TOKEN_SERVICE } from './token-server.js';
export type { TokenRequest, TokenServer } from './token-server.js';
