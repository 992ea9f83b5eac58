/**
 * `bkt build --load`: the local Docker engine, reached as the docker CLI
 * reaches it — `DOCKER_HOST` (`unix://PATH` or `tcp://HOST:PORT`), else
 * `unix:///var/run/docker.sock` — and an image archive posted to its
 * `/images/load` endpoint (what `docker load` does).
 */
import { createReadStream } from 'node:fs';
import { request, type IncomingMessage, type RequestOptions } from 'node:http';
import { BktError } from '@bkt/core';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/** Where a Docker engine listens, and how that was chosen (for errors). */
export interface DockerEngine {
  /** `unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`. */
  url: string;
  /** How it was chosen: `DOCKER_HOST=…`, or `the default socket; DOCKER_HOST is unset`. */
  from: string;
  connect: Pick<RequestOptions, 'socketPath' | 'host' | 'port'>;
}

/** The engine `env` points at: `DOCKER_HOST`, else the default socket. A form bkt can't speak is an error naming it. */
export function dockerEngine(env: NodeJS.ProcessEnv = process.env): DockerEngine {
  const host = env.DOCKER_HOST?.trim();
  if (!host) return { url: `unix://${DEFAULT_DOCKER_SOCKET}`, from: 'the default socket; DOCKER_HOST is unset', connect: { socketPath: DEFAULT_DOCKER_SOCKET } };
  const from = `DOCKER_HOST=${host}`;
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw new BktError('INVALID_ARGUMENT', `--load: ${from}: expected unix:///absolute/path`, { attribute: 'load' });
    return { url: host, from, connect: { socketPath } };
  }
  const tcp = /^tcp:\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(host);
  if (tcp) {
    if (env.DOCKER_TLS_VERIFY) throw new BktError('UNIMPLEMENTED', `--load: ${from} with DOCKER_TLS_VERIFY: TLS to the engine is not supported yet`, { attribute: 'load' });
    return { url: host, from, connect: { host: tcp[1]!.replace(/^\[|\]$/g, ''), port: Number(tcp[2] ?? 2375) } };
  }
  throw new BktError('UNIMPLEMENTED', `--load: ${from}: bkt reaches a Docker engine over unix:// or tcp:// only`, { attribute: 'load' });
}

function call(engine: DockerEngine, opts: RequestOptions, body?: NodeJS.ReadableStream): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...engine.connect, ...opts }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body) {
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    } else req.end();
  });
}

/** Checks that the engine answers `/_ping`; otherwise an error naming where bkt looked and why it failed. */
export async function pingDockerEngine(engine: DockerEngine): Promise<void> {
  const unreachable = (why: string, cause?: unknown) =>
    new BktError(
      'NOT_FOUND',
      `--load: no Docker engine reachable at ${engine.url} (${engine.from}): ${why}; start dockerd, or point DOCKER_HOST at a running engine`,
      { attribute: 'load' },
      cause === undefined ? undefined : { cause },
    );
  let res: { status: number; text: string };
  try {
    res = await call(engine, { method: 'GET', path: '/_ping', timeout: 10_000 });
  } catch (err) {
    throw unreachable((err as Error).message, err);
  }
  if (res.status !== 200) throw unreachable(`/_ping answered HTTP ${res.status} ${res.text.trim().slice(0, 200)}`);
}

/**
 * Loads the image archive `file` (a docker archive) into the engine, as
 * `docker load` does; returns the engine's `Loaded image…` lines. An error the
 * engine reports is an error quoting it.
 */
export async function loadIntoDockerEngine(engine: DockerEngine, file: string): Promise<string[]> {
  let res: { status: number; text: string };
  try {
    res = await call(
      engine,
      { method: 'POST', path: '/images/load?quiet=1', headers: { 'Content-Type': 'application/x-tar' } },
      createReadStream(file),
    );
  } catch (err) {
    throw new BktError('INTERNAL', `--load: sending the image to the Docker engine at ${engine.url} failed: ${(err as Error).message}`, { attribute: 'load' }, { cause: err });
  }
  const messages: { stream?: string; error?: string; message?: string }[] = [];
  for (const line of res.text.split('\n')) {
    if (!line.trim()) continue;
    try {
      messages.push(JSON.parse(line) as { stream?: string; error?: string; message?: string });
    } catch {
      messages.push({ stream: line });
    }
  }
  const failed = messages.find((m) => m.error) ?? (res.status >= 400 ? (messages[0] ?? { error: `HTTP ${res.status}` }) : undefined);
  if (failed) {
    throw new BktError('INTERNAL', `--load: the Docker engine at ${engine.url} refused the image: ${(failed.error ?? failed.message ?? failed.stream ?? '').trim()}`, { attribute: 'load' });
  }
  return messages.map((m) => (m.stream ?? '').trim()).filter(Boolean);
}
