/**
 * A token server for docker-registry's `auth.token` mode (the docker registry
 * token spec, the flow Docker Hub and most public registries use): it signs
 * RS256 JWTs with a throw-away self-signed certificate (made with `openssl`)
 * whose chain the registry checks against its `rootcertbundle`.
 *
 * Policy: anonymous requests get `pull`; requests with the configured user's
 * Basic credentials, or with its refresh token (the OAuth2 `POST` grant
 * docker uses for an identity token), get everything they ask for; wrong
 * credentials get 401.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomUUID, sign, X509Certificate, type KeyObject } from 'node:crypto';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

export const TOKEN_SERVICE = 'bkt-test-registry';
export const TOKEN_ISSUER = 'bkt-test-token-issuer';

/** One request the token server answered. */
export interface TokenRequest {
  grant: 'anonymous' | 'password' | 'refresh_token';
  /** The scopes asked for, as sent (`repository:a/b:pull,push`). */
  scopes: string[];
  status: number;
}

export interface TokenServer {
  /** The realm URL (`http://127.0.0.1:PORT/token`). */
  realm: string;
  /** PEM file of the signing certificate, for the registry's `rootcertbundle`. */
  certFile: string;
  /** The refresh token (docker's `identitytoken`) standing for the configured user. */
  refreshToken: string;
  readonly requests: TokenRequest[];
  close(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** Starts the token server; `dir` receives the key and certificate. */
export async function startTokenServer(dir: string, user: { user: string; password: string }): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=bkt-test-token'], {
    stdio: 'ignore',
  });
  const key: KeyObject = createPrivateKey(readFileSync(keyFile));
  const certDer = new X509Certificate(readFileSync(certFile)).raw;
  const refreshToken = `refresh-${randomUUID()}`;
  const requests: TokenRequest[] = [];

  const issue = (scopes: string[], grantAll: boolean, subject: string) => {
    const access = scopes.flatMap((scope) => {
      const [type, ...rest] = scope.split(':');
      const actions = rest.pop()?.split(',') ?? [];
      const name = rest.join(':');
      const granted = grantAll ? actions : actions.filter((a) => a === 'pull');
      return type && name ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = { iss: TOKEN_ISSUER, sub: subject, aud: TOKEN_SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://token');
      const answer = (status: number, body: object, entry: Omit<TokenRequest, 'status'>) => {
        requests.push({ ...entry, status });
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      };
      if (req.method === 'POST') {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
        const entry = { grant: 'refresh_token' as const, scopes };
        if (form.get('grant_type') !== 'refresh_token' || form.get('refresh_token') !== refreshToken) {
          return answer(401, { error: 'invalid_grant' }, entry);
        }
        const token = issue(scopes, true, user.user);
        return answer(200, { access_token: token, expires_in: 300, refresh_token: refreshToken }, entry);
      }
      const scopes = url.searchParams.getAll('scope');
      const authorization = req.headers.authorization;
      if (!authorization) {
        return answer(200, { token: issue(scopes, false, ''), expires_in: 300 }, { grant: 'anonymous', scopes });
      }
      const [scheme, value] = authorization.split(' ');
      const [name, ...pass] = Buffer.from(value ?? '', 'base64').toString('utf8').split(':');
      const entry = { grant: 'password' as const, scopes };
      if (scheme !== 'Basic' || name !== user.user || pass.join(':') !== user.password) return answer(401, { details: 'bad credentials' }, entry);
      answer(200, { token: issue(scopes, true, name), expires_in: 300 }, entry);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  return {
    realm,
    certFile,
    refreshToken,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
