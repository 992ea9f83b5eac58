/**
 * A real OCI registry for tests: Debian's `docker-registry` (the CNCF
 * distribution registry, /usr/bin/docker-registry) on a free 127.0.0.1 port
 * with temporary storage, optionally behind htpasswd auth. `@bkt/testkit`
 * re-exports it; it lives here so this package's own tests can use it
 * without a dependency cycle.
 *
 * htpasswd files are made with `htpasswd -nbB` (Debian's apache2-utils, which
 * scripts/setup installs).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BktError } from '@bkt/core';
import { startTokenServer, TOKEN_ISSUER, TOKEN_SERVICE, type TokenServer } from './token-server.js';

export const DOCKER_REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface RegistryServerOptions {
  /** Require HTTP Basic auth with this user (an htpasswd file with a bcrypt hash). */
  htpasswd?: { user: string; password: string };
  /**
   * Require bearer tokens from a token server started alongside (the token
   * flow of Docker Hub): anonymous users may pull, this user may push.
   */
  token?: { user: string; password: string };
  /** Serve HTTPS with a throw-away self-signed certificate (for `insecure = true` host settings). */
  tls?: boolean;
}

export interface RegistryServer {
  /** `127.0.0.1:PORT`, the registry part of image references. */
  host: string;
  /** `http://127.0.0.1:PORT` (`https://` with `tls`). */
  url: string;
  /** The self-signed certificate (PEM file), with `tls`. */
  certFile?: string;
  /** The storage root (filesystem driver). */
  storageDir: string;
  /** The credentials the registry requires, when started with `htpasswd` or `token`. */
  credentials?: { username: string; password: string };
  /** The token server, when started with `token`. */
  tokenServer?: TokenServer;
  /** Kills the registry and removes its temporary directory; idempotent. */
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function bcryptHtpasswdLine(user: string, password: string): string {
  if (!existsSync('/usr/bin/htpasswd')) {
    throw new BktError('NOT_FOUND', 'htpasswd is missing: install Debian package apache2-utils (scripts/setup does)');
  }
  return execFileSync('htpasswd', ['-nbB', user, password], { encoding: 'utf8' }).trim();
}

/** GET `url` (certificate not verified); resolves with the status, or undefined when nothing answers. */
function probe(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = (url.startsWith('https:') ? https : http).get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
  });
}

async function waitUntilServing(url: string, child: ChildProcess, stderr: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new BktError('INTERNAL', `docker-registry exited (${child.exitCode ?? child.signalCode}) before serving: ${stderr().trim()}`);
    }
    const status = await probe(`${url}/v2/`);
    if (status === 200 || status === 401) return;
    await sleep(50);
  }
  throw new BktError('INTERNAL', `docker-registry did not answer ${url}/v2/ within ${timeoutMs} ms: ${stderr().trim()}`);
}

/**
 * Starts `docker-registry serve` on a free loopback port with temporary
 * filesystem storage (deletes enabled), optionally behind htpasswd auth, and
 * waits until `/v2/` answers.
 */
export async function startRegistry(opts: RegistryServerOptions = {}): Promise<RegistryServer> {
  if (!existsSync(DOCKER_REGISTRY_BINARY)) {
    throw new BktError('NOT_FOUND', `${DOCKER_REGISTRY_BINARY} is missing: install Debian package docker-registry`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'bkt-registry-'));
  const storageDir = join(dir, 'storage');
  let authSection = '';
  if (opts.htpasswd) {
    const file = join(dir, 'htpasswd');
    await writeFile(file, `${bcryptHtpasswdLine(opts.htpasswd.user, opts.htpasswd.password)}\n`, { mode: 0o600 });
    authSection = `auth:\n  htpasswd:\n    realm: bkt-test\n    path: ${file}\n`;
  }
  let tokenServer: TokenServer | undefined;
  if (opts.token) {
    tokenServer = await startTokenServer(dir, opts.token);
    authSection =
      `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${TOKEN_SERVICE}\n` +
      `    issuer: ${TOKEN_ISSUER}\n    rootcertbundle: ${tokenServer.certFile}\n`;
  }
  const user = opts.htpasswd ?? opts.token;
  let tlsSection = '';
  let certFile: string | undefined;
  if (opts.tls) {
    certFile = join(dir, 'registry.crt');
    const keyFile = join(dir, 'registry.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    tlsSection = `  tls:\n    certificate: ${certFile}\n    key: ${keyFile}\n`;
  }

  // The port is free when chosen but may be taken before the registry binds it: retry with another.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const configFile = join(dir, 'config.yml');
    await writeFile(
      configFile,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${storageDir}`,
        '  delete:',
        '    enabled: true',
        '  maintenance:',
        '    uploadpurging:',
        '      enabled: false',
        'http:',
        `  addr: ${host}`,
        tlsSection,
        authSection,
      ].join('\n'),
    );
    const child = spawn(DOCKER_REGISTRY_BINARY, ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const url = `${opts.tls ? 'https' : 'http'}://${host}`;
    try {
      await waitUntilServing(url, child, () => stderr, 15_000);
    } catch (err) {
      lastError = err;
      if (child.exitCode === null) child.kill('SIGKILL');
      continue;
    }
    let stopped = false;
    return {
      host,
      url,
      storageDir,
      certFile,
      credentials: user ? { username: user.user, password: user.password } : undefined,
      tokenServer,
      async stop() {
        if (stopped) return;
        stopped = true;
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          process.kill(child.pid!, 'SIGTERM');
          const timer = setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }
        await tokenServer?.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await tokenServer?.close();
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}
