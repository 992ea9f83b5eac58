/** BuildKit source policies (proto package `moby.buildkit.v1.sourcepolicy`): `Policy`, `Rule`, `Selector`, `Update`. */
export * from './gen/github.com/moby/buildkit/sourcepolicy/pb/policy.js';
