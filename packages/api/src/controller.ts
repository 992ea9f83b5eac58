/** buildx controller API (proto package `buildx.controller.v1`): service `Controller`, a long-lived, debuggable build session. */
export * from './gen/github.com/docker/buildx/controller/pb/controller.js';
