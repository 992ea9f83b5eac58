/**
 * Views of one client (`withCredentials`), as a long-lived daemon uses them:
 * one per build, sharing connections and settings, never auth. A fake
 * registry (Bearer tokens bound to the user who asked for them, or Basic)
 * records which user every request came as.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isBktError, type RegistryCredentials } from '@bkt/core';
import { digestOf } from '@bkt/oci';
import { RegistryClient } from './client.js';
import { buildClientCredentials, forBuildClient, staticCredentials, type Credentials } from './credentials.js';

const fastRetry = { attempts: 2, baseDelayMs: 5, maxDelayMs: 20 };
const USERS: Record<string, string> = { alice: 'alice-secret', bob: 'bob-secret' };
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] }));

/** Who may read a repository: `alice/…` alice only, `bob/…` bob only, anything else everyone. */
const mayRead = (user: string, repo: string) => !(repo.startsWith('alice/') || repo.startsWith('bob/')) || repo.startsWith(`${user}/`);

interface Seen {
  method: string;
  path: string;
  /** The user the request authenticated as (`anonymous` with an anonymous token, `-` without any authorization). */
  as: string;
}

interface FakeRegistry {
  host: string;
  seen: Seen[];
  tokenRequests: { as: string; scopes: string[] }[];
  close(): Promise<void>;
}

function basicUser(header: string | undefined): string | undefined | null {
  if (!header?.startsWith('Basic ')) return undefined;
  const [user, password] = Buffer.from(header.slice(6), 'base64').toString().split(/:(.*)/s);
  return USERS[user] === password ? user : null;
}

async function startFake(scheme: 'bearer' | 'basic'): Promise<FakeRegistry> {
  const seen: Seen[] = [];
  const tokenRequests: FakeRegistry['tokenRequests'] = [];
  const tokens = new Map<string, string>(); // token → user
  let n = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const auth = req.headers.authorization;
    if (url.pathname === '/token') {
      const user = basicUser(auth);
      if (user === null) return void res.writeHead(401).end();
      const as = user ?? 'anonymous';
      const token = `token-${++n}`;
      tokens.set(token, as);
      tokenRequests.push({ as, scopes: url.searchParams.getAll('scope') });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    const challenge = () =>
      res
        .writeHead(401, {
          'www-authenticate': scheme === 'bearer' ? `Bearer realm="http://${host}/token",service="fake"` : 'Basic realm="fake"',
          'content-type': 'application/json',
        })
        .end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    let as: string | undefined;
    if (scheme === 'bearer' && auth?.startsWith('Bearer ')) as = tokens.get(auth.slice(7));
    if (scheme === 'basic') as = basicUser(auth) ?? undefined;
    seen.push({ method: req.method!, path: url.pathname, as: as ?? '-' });
    const m = /^\/v2\/(.+)\/manifests\/[^/]+$/.exec(url.pathname);
    if (!m) return void res.writeHead(url.pathname === '/v2/' && as ? 200 : 401).end();
    // Basic registries serve public repositories without authorization; bearer ones want at least an anonymous token.
    const allowed = as ? mayRead(as, m[1]) : scheme === 'basic' && mayRead('anonymous', m[1]);
    if (!allowed) return challenge();
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length, 'docker-content-digest': digestOf(manifest) });
    res.end(req.method === 'HEAD' ? undefined : manifest);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    seen,
    tokenRequests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A build's client offering `user`'s credentials for `host` (as `BuildClient.credentials`), counting the lookups. */
function buildClient(host: string, user?: string) {
  const lookups: string[] = [];
  return {
    lookups,
    async credentials(h: string): Promise<RegistryCredentials | null> {
      lookups.push(h);
      return user && h === host ? { username: user, secret: USERS[user] } : null;
    },
  };
}

describe.each(['bearer', 'basic'] as const)('views of one client (%s auth)', (scheme) => {
  let fake: FakeRegistry;
  let base: RegistryClient;
  beforeAll(async () => {
    fake = await startFake(scheme);
    // The long-lived client: anonymous itself; builds use views of it.
    base = new RegistryClient({ credentials: staticCredentials({}), retry: fastRetry });
  });
  afterAll(async () => {
    base?.close();
    await fake?.close();
  });
  afterEach(() => {
    fake.seen.length = 0;
    fake.tokenRequests.length = 0;
  });

  it('each build\'s requests carry its own credentials, interleaved on one client', async () => {
    const views: Record<string, RegistryClient> = {
      alice: base.withCredentials(buildClientCredentials(buildClient(fake.host, 'alice'))),
      bob: base.withCredentials(buildClientCredentials(buildClient(fake.host, 'bob'))),
      anonymous: base.withCredentials(buildClientCredentials(buildClient(fake.host))),
    };
    // Each reference names the build asking for it: `alice/…`, `bob/…`, `public/by-WHO`.
    const jobs: [string, string][] = [];
    for (let i = 0; i < 4; i++) {
      for (const who of ['alice', 'bob']) jobs.push([who, `${fake.host}/${who}/app:v${i}`]);
      for (const who of ['alice', 'bob', 'anonymous']) jobs.push([who, `${fake.host}/public/by-${who}:v${i}`]);
    }
    const digests = await Promise.all(jobs.map(async ([who, ref]) => (await views[who].getManifest(ref)).descriptor.digest));
    for (const d of digests) expect(d).toBe(digestOf(manifest));

    const senderOf = (path: string) => {
      const repo = /^\/v2\/(.+)\/manifests\//.exec(path)![1];
      return repo.startsWith('public/by-') ? repo.slice('public/by-'.length) : repo.split('/')[0];
    };
    // Every request went out as its own build's user, or without authorization (before the challenge was known).
    for (const s of fake.seen) expect([senderOf(s.path), '-']).toContain(s.as);
    // Each private manifest was served to its owner's credentials (HEAD and GET alike).
    for (const who of ['alice', 'bob']) {
      expect(fake.seen.filter((s) => s.path.startsWith(`/v2/${who}/app/`) && s.as === who).length).toBeGreaterThanOrEqual(4);
    }
    if (scheme === 'bearer') expect(fake.tokenRequests.some((t) => t.as === 'anonymous' && t.scopes[0] === 'repository:public/by-anonymous:pull')).toBe(true);
  });

  it('a build without the credentials is refused after one with them succeeded (nothing of the other build is reused)', async () => {
    const ref = `${fake.host}/alice/private:v1`;
    const alice = base.withCredentials(buildClientCredentials(buildClient(fake.host, 'alice')));
    expect((await alice.getManifest(ref)).descriptor.digest).toBe(digestOf(manifest));
    for (const other of [buildClient(fake.host), buildClient(fake.host, 'bob')]) {
      const view = base.withCredentials(buildClientCredentials(other));
      const err = await view.getManifest(ref).catch((e: unknown) => e as Error);
      expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
      expect(other.lookups).toContain(fake.host);
    }
    // Alice's view still works: her token (or header) was not touched by the others.
    expect((await alice.getManifest(ref)).descriptor.digest).toBe(digestOf(manifest));
    // The base client itself, anonymous, is refused too.
    expect(isBktError(await base.getManifest(ref).catch((e: unknown) => e), 'PERMISSION_DENIED')).toBe(true);
  });

  it('asks each build\'s client once per host, and closing a view leaves the client open', async () => {
    const c = buildClient(fake.host, 'bob');
    const bob = base.withCredentials(buildClientCredentials(c));
    for (let i = 0; i < 3; i++) await bob.getManifest(`${fake.host}/bob/app:v${i}`);
    expect(c.lookups).toEqual([fake.host]);
    bob.close();
    await base.withCredentials(buildClientCredentials(buildClient(fake.host, 'bob'))).getManifest(`${fake.host}/bob/app:v9`);
  });

  if (scheme === 'bearer') {
    it('shares a token only between builds with the same credentials', async () => {
      const ref = `${fake.host}/bob/shared:v1`;
      await base.withCredentials(buildClientCredentials(buildClient(fake.host, 'bob'))).getManifest(ref);
      await base.withCredentials(buildClientCredentials(buildClient(fake.host, 'bob'))).getManifest(ref);
      const scope = 'repository:bob/shared:pull';
      expect(fake.tokenRequests.filter((t) => t.scopes.includes(scope))).toEqual([{ as: 'bob', scopes: [scope] }]);
      // Alice asks for the same scope: a token of her own (refused by the registry), never bob's.
      const err = await base.withCredentials(buildClientCredentials(buildClient(fake.host, 'alice'))).getManifest(ref).catch((e: unknown) => e);
      expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
      const asked = fake.tokenRequests.filter((t) => t.scopes.includes(scope)).map((t) => t.as);
      expect(asked[0]).toBe('bob');
      expect(asked.slice(1).length).toBeGreaterThan(0);
      for (const a of asked.slice(1)) expect(a).toBe('alice');
    });
  }
});

describe('the client seam\'s credentials', () => {
  it('convert both ways; an empty username is an identity token, as in BuildKit\'s Auth service', async () => {
    const provider = staticCredentials({ a: { username: 'u', password: 'p' }, b: { identityToken: 'refresh' } });
    const offered = forBuildClient(provider);
    expect(await offered('a')).toEqual({ username: 'u', secret: 'p' });
    expect(await offered('b')).toEqual({ username: '', secret: 'refresh' });
    expect(await offered('c')).toBeNull();
    const back = buildClientCredentials({ credentials: offered });
    const want: Record<string, Credentials | undefined> = { a: { username: 'u', password: 'p' }, b: { identityToken: 'refresh' }, c: undefined };
    for (const [host, creds] of Object.entries(want)) expect(await back(host)).toEqual(creds);
  });
});
