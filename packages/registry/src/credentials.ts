/**
 * Registry credentials, and the provider that reads them as docker does:
 * `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`) with `auths`
 * entries (`auth` = base64 `user:password`, or `username`/`password`,
 * `identitytoken`), and `credHelpers` / `credsStore` answered by running
 * `docker-credential-<helper> get`. And the two converters between a
 * provider and the client seam's shape (`BuildClient.credentials` of
 * @bkt/core, BuildKit's session Auth service).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BktError, type RegistryCredentials } from '@bkt/core';
import { DOCKER_HUB } from '@bkt/oci';

/** A user and password, or an OAuth2 refresh token (docker's `identitytoken`). */
export type Credentials = { username: string; password: string } | { identityToken: string };

/** Credentials for a registry host (`docker.io`, `127.0.0.1:5000`), or undefined for anonymous access. */
export type CredentialsProvider = (registry: string) => Promise<Credentials | undefined>;

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** The key docker uses for Docker Hub in `auths` and credential helpers. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

/** The host part of an `auths` key, which may be a URL (`https://host/v1/`). */
function hostOfKey(key: string): string {
  const host = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
}

function runHelper(helper: string, serverUrl: string): Promise<Credentials | undefined> {
  const program = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = execFile(program, ['get'], { timeout: 30_000 }, (err, stdout) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(undefined); // helper not installed
        // Helpers answer "credentials not found in native keychain" for unknown hosts.
        if (/not found/i.test(`${stdout}${err.message}`)) return resolve(undefined);
        return reject(new BktError('PERMISSION_DENIED', `${program} get failed for ${serverUrl}: ${err.message}`, {}, { cause: err }));
      }
      try {
        const out = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (!out.Secret) return resolve(undefined);
        resolve(out.Username === '<token>' ? { identityToken: out.Secret } : { username: out.Username ?? '', password: out.Secret });
      } catch (parseErr) {
        reject(new BktError('PERMISSION_DENIED', `${program} get printed invalid JSON for ${serverUrl}`, {}, { cause: parseErr }));
      }
    });
    child.stdin?.end(serverUrl);
  });
}

function decodeAuth(entry: NonNullable<DockerConfigFile['auths']>[string], where: string): Credentials | undefined {
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new BktError('CONFIG', `invalid "auth" for ${where}: not base64 of user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  return undefined;
}

/**
 * A provider reading docker's config file at each call (so a `docker login`
 * done meanwhile is seen). A missing file means anonymous access.
 */
export function dockerConfigCredentials(opts: { configPath?: string } = {}): CredentialsProvider {
  // As docker's CLI: an empty DOCKER_CONFIG is the same as none.
  const configPath = opts.configPath ?? join(process.env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json');
  return async (registry) => {
    let config: DockerConfigFile;
    try {
      config = JSON.parse(await readFile(configPath, 'utf8')) as DockerConfigFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new BktError('CONFIG', `cannot read docker config ${configPath}: ${(err as Error).message}`, { file: configPath }, { cause: err });
    }
    const serverUrl = registry === DOCKER_HUB ? DOCKER_HUB_KEY : registry;
    const helper = config.credHelpers?.[registry] ?? (registry === DOCKER_HUB ? config.credHelpers?.[DOCKER_HUB_KEY] : undefined);
    if (helper) return runHelper(helper, serverUrl);
    if (config.credsStore) {
      const fromStore = await runHelper(config.credsStore, serverUrl);
      if (fromStore) return fromStore;
    }
    for (const [key, entry] of Object.entries(config.auths ?? {})) {
      if (hostOfKey(key) === registry) return decodeAuth(entry, `${registry} in ${configPath}`);
    }
    return undefined;
  };
}

/** A provider with fixed credentials per registry host (for tests and programmatic use). */
export function staticCredentials(byRegistry: Record<string, Credentials>): CredentialsProvider {
  return async (registry) => byRegistry[registry];
}

/**
 * A provider asking a build's client (`BuildClient.credentials` of
 * @bkt/core): a backend's registry client for one build is
 * `client.withCredentials(buildClientCredentials(ctx.client))`. As in
 * BuildKit's Auth service, an empty username with a secret is an identity
 * token (the OAuth2 refresh grant).
 */
export function buildClientCredentials(client: { credentials(host: string): Promise<RegistryCredentials | null> }): CredentialsProvider {
  return async (registry) => {
    const c = await client.credentials(registry);
    if (!c || (c.username === '' && c.secret === '')) return undefined;
    return c.username === '' ? { identityToken: c.secret } : { username: c.username, password: c.secret };
  };
}

/**
 * `provider` in the client seam's shape, for a client offering credentials
 * (`createHostClient({ credentials: forBuildClient(dockerConfigCredentials()) })`):
 * an identity token travels as an empty username with the token as secret.
 */
export function forBuildClient(provider: CredentialsProvider): (host: string) => Promise<RegistryCredentials | null> {
  return async (host) => {
    const c = await provider(host);
    if (!c) return null;
    return 'identityToken' in c ? { username: '', secret: c.identityToken } : { username: c.username, secret: c.password };
  };
}
