/** BuildKit API capabilities (proto package `moby.buildkit.v1.apicaps`): `APICap`. */
export * from './gen/github.com/moby/buildkit/util/apicaps/pb/caps.js';
