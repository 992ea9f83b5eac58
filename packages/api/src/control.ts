/** BuildKit control API (proto package `moby.buildkit.v1`): service `Control` (Solve, Status, Session, …) and its messages. */
export * from './gen/github.com/moby/buildkit/api/services/control/control.js';
