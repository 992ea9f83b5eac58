/**
 * Auth against the real docker-registry: htpasswd (Basic) and token (Bearer)
 * modes, credentials from a docker config file and a credential helper.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isBktError } from '@bkt/core';
import { digestOf } from '@bkt/oci';
import { parseWwwAuthenticate } from './auth.js';
import { RegistryClient } from './client.js';
import { dockerConfigCredentials, staticCredentials } from './credentials.js';
import { startRegistry, type RegistryServer } from './testing/registry-server.js';

const fastRetry = { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 };

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

function blob(size = 1000) {
  const data = randomBytes(size);
  return { data, desc: { digest: digestOf(data), size } };
}

describe('parseWwwAuthenticate', () => {
  it('parses a bearer challenge with quoted params', () => {
    expect(
      parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'),
    ).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
      },
    ]);
  });

  it('parses several challenges, unquoted values, escapes and an error param', () => {
    expect(parseWwwAuthenticate('Basic realm="a \\"b\\"", Bearer realm=x, error="insufficient_scope"')).toEqual([
      { scheme: 'basic', params: { realm: 'a "b"' } },
      { scheme: 'bearer', params: { realm: 'x', error: 'insufficient_scope' } },
    ]);
  });
});

describe('htpasswd (Basic) registry', () => {
  let registry: RegistryServer;
  let dir: string;
  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { user: 'alice', password: 'pa:ss' } });
    dir = await mkdtemp(join(tmpdir(), 'bkt-auth-test-'));
  });
  afterAll(async () => {
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('pushes and pulls with credentials', async () => {
    const client = new RegistryClient({ credentials: staticCredentials({ [registry.host]: { username: 'alice', password: 'pa:ss' } }), retry: fastRetry });
    try {
      const { data, desc } = blob();
      expect(await client.pushBlob(`${registry.host}/a/b`, desc, data)).toBe('uploaded');
      expect(await client.headBlob(`${registry.host}/a/b`, desc.digest)).toBeDefined();
    } finally {
      client.close();
    }
  });

  it('fails without credentials with an error naming the registry', async () => {
    const client = new RegistryClient({ credentials: staticCredentials({}), retry: fastRetry });
    try {
      const { data, desc } = blob();
      const err = await rejection(client.pushBlob(`${registry.host}/a/b`, desc, data));
      expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
      expect(err.message).toContain(`registry ${registry.host} requires authentication and no credentials are configured for it`);
    } finally {
      client.close();
    }
  });

  it('says the credentials were refused when they are wrong', async () => {
    const client = new RegistryClient({ credentials: staticCredentials({ [registry.host]: { username: 'alice', password: 'nope' } }), retry: fastRetry });
    try {
      const err = await rejection(client.getManifest(`${registry.host}/a/b:latest`));
      expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
      expect(err.message).toContain(`registry ${registry.host} refused the credentials configured for it`);
    } finally {
      client.close();
    }
  });

  it('reads credentials from a docker config file (auths, base64 auth)', async () => {
    const configPath = join(dir, 'config.json');
    await writeFile(configPath, JSON.stringify({ auths: { [`http://${registry.host}`]: { auth: Buffer.from('alice:pa:ss').toString('base64') } } }));
    const client = new RegistryClient({ credentials: dockerConfigCredentials({ configPath }), retry: fastRetry });
    try {
      const { data, desc } = blob();
      expect(await client.pushBlob(`${registry.host}/cfg/auths`, desc, data)).toBe('uploaded');
    } finally {
      client.close();
    }
  });

  it('asks a credential helper named in credHelpers', async () => {
    const bin = join(dir, 'bin');
    const log = join(dir, 'helper.log');
    await mkdir(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-bkttest');
    await writeFile(
      helper,
      `#!/bin/sh\n[ "$1" = get ] || exit 1\nread server\necho "$server" >> ${log}\necho '{"ServerURL":"'"$server"'","Username":"alice","Secret":"pa:ss"}'\n`,
    );
    await chmod(helper, 0o755);
    const configPath = join(dir, 'helper-config.json');
    await writeFile(configPath, JSON.stringify({ credHelpers: { [registry.host]: 'bkttest' } }));
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath}`;
    const client = new RegistryClient({ credentials: dockerConfigCredentials({ configPath }), retry: fastRetry });
    try {
      const { data, desc } = blob();
      expect(await client.pushBlob(`${registry.host}/cfg/helper`, desc, data)).toBe('uploaded');
      // Asked once for the whole push (HEAD, POST, PUT), with the registry's host.
      expect(await readFile(log, 'utf8')).toBe(`${registry.host}\n`);
    } finally {
      process.env.PATH = savedPath;
      client.close();
    }
  });
});

describe('token (Bearer) registry', () => {
  let registry: RegistryServer;
  let dir: string;
  beforeAll(async () => {
    registry = await startRegistry({ token: { user: 'bob', password: 'hunter2' } });
    dir = await mkdtemp(join(tmpdir(), 'bkt-token-test-'));
  });
  afterAll(async () => {
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gets a token with push scope for the repository, caches it, and pulls anonymously', async () => {
    const client = new RegistryClient({ credentials: staticCredentials({ [registry.host]: { username: 'bob', password: 'hunter2' } }), retry: fastRetry });
    const blobs = [blob(), blob(), blob()];
    try {
      for (const { data, desc } of blobs) expect(await client.pushBlob(`${registry.host}/tok/app`, desc, data)).toBe('uploaded');
    } finally {
      client.close();
    }
    const pushTokens = registry.tokenServer!.requests.filter((r) => r.scopes.includes('repository:tok/app:pull,push'));
    expect(pushTokens.map((r) => r.grant)).toEqual(['password']); // one token for three uploads
    expect(pushTokens[0].status).toBe(200);

    const anonymous = new RegistryClient({ credentials: staticCredentials({}), retry: fastRetry });
    try {
      const { desc } = blobs[0];
      const chunks: Uint8Array[] = [];
      for await (const c of anonymous.blobStream(`${registry.host}/tok/app`, desc)) chunks.push(c);
      expect(Buffer.concat(chunks).equals(blobs[0].data)).toBe(true);
      expect(registry.tokenServer!.requests.some((r) => r.grant === 'anonymous' && r.scopes.includes('repository:tok/app:pull'))).toBe(true);

      // Anonymous push: the token lacks push, the registry refuses, the error names the registry.
      const { data, desc: d2 } = blob();
      const err = await rejection(anonymous.pushBlob(`${registry.host}/tok/app`, d2, data));
      expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
      expect(err.message).toContain(`registry ${registry.host} requires authentication`);
    } finally {
      anonymous.close();
    }
  });

  it('pulls a large blob (read as bulk data) after answering the 401 challenge', async () => {
    const { data, desc } = blob(500_000);
    const bob = new RegistryClient({ credentials: staticCredentials({ [registry.host]: { username: 'bob', password: 'hunter2' } }), retry: fastRetry });
    const anonymous = new RegistryClient({ credentials: staticCredentials({}), retry: fastRetry });
    try {
      await bob.pushBlob(`${registry.host}/tok/bulk`, desc, data);
      const before = registry.tokenServer!.requests.length;
      const chunks: Uint8Array[] = [];
      for await (const c of anonymous.blobStream(`${registry.host}/tok/bulk`, desc)) chunks.push(c);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
      expect(registry.tokenServer!.requests.slice(before).map((r) => [r.grant, r.scopes])).toEqual([['anonymous', ['repository:tok/bulk:pull']]]);
    } finally {
      bob.close();
      anonymous.close();
    }
  });

  it('reports refused credentials from the token server', async () => {
    const client = new RegistryClient({ credentials: staticCredentials({ [registry.host]: { username: 'bob', password: 'wrong' } }), retry: fastRetry });
    try {
      const err = await rejection(client.getManifest(`${registry.host}/tok/app:v1`));
      expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
      expect(err.message).toContain(registry.host);
      expect(err.message).toContain('refused repository:tok/app:pull');
    } finally {
      client.close();
    }
  });

  it('uses an identity token from the docker config with the OAuth2 refresh grant', async () => {
    const configPath = join(dir, 'config.json');
    await writeFile(configPath, JSON.stringify({ auths: { [registry.host]: { identitytoken: registry.tokenServer!.refreshToken } } }));
    const client = new RegistryClient({ credentials: dockerConfigCredentials({ configPath }), retry: fastRetry });
    try {
      const { data, desc } = blob();
      expect(await client.pushBlob(`${registry.host}/tok/oauth`, desc, data)).toBe('uploaded');
      expect(registry.tokenServer!.requests.some((r) => r.grant === 'refresh_token' && r.scopes.includes('repository:tok/oauth:pull,push'))).toBe(true);
    } finally {
      client.close();
    }
  });
});
