/** BuildKit's session secrets (proto package `moby.buildkit.secrets.v1`): service `Secrets` (GetSecret), served by a session's client. */
export * from './gen/github.com/moby/buildkit/session/secrets/secrets.js';
