/**
 * BuildKit's session file transfer and registry auth (proto package
 * `moby.filesync.v1`): services `FileSync` (DiffCopy, TarStream), `FileSend`
 * (DiffCopy) and `Auth` (Credentials, FetchToken, GetTokenAuthority,
 * VerifyTokenAuthority), served by a session's client.
 */
export * from './gen/github.com/moby/buildkit/session/filesync/filesync.js';
export {
  AuthClient,
  AuthService,
  CredentialsRequest,
  CredentialsResponse,
  FetchTokenRequest,
  FetchTokenResponse,
  GetTokenAuthorityRequest,
  GetTokenAuthorityResponse,
  VerifyTokenAuthorityRequest,
  VerifyTokenAuthorityResponse,
} from './gen/github.com/moby/buildkit/session/auth/auth.js';
export type { AuthServer } from './gen/github.com/moby/buildkit/session/auth/auth.js';
