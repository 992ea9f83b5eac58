import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dockerEngine, loadIntoDockerEngine, pingDockerEngine } from './docker-engine.js';

describe('dockerEngine: where --load looks', () => {
  it('takes DOCKER_HOST (unix:// or tcp://), else the default socket', () => {
    expect(dockerEngine({})).toMatchObject({ url: 'unix:///var/run/docker.sock', connect: { socketPath: '/var/run/docker.sock' } });
    expect(dockerEngine({ DOCKER_HOST: 'unix:///run/user/1000/docker.sock' })).toMatchObject({
      from: 'DOCKER_HOST=unix:///run/user/1000/docker.sock',
      connect: { socketPath: '/run/user/1000/docker.sock' },
    });
    expect(dockerEngine({ DOCKER_HOST: 'tcp://127.0.0.1:2376' }).connect).toEqual({ host: '127.0.0.1', port: 2376 });
    expect(dockerEngine({ DOCKER_HOST: 'tcp://[::1]' }).connect).toEqual({ host: '::1', port: 2375 });
  });

  it('refuses what it cannot speak, naming DOCKER_HOST', () => {
    expect(() => dockerEngine({ DOCKER_HOST: 'ssh://me@host' })).toThrow(/--load: DOCKER_HOST=ssh:\/\/me@host: bkt reaches a Docker engine over unix:\/\/ or tcp:\/\/ only/);
    expect(() => dockerEngine({ DOCKER_HOST: 'unix://relative.sock' })).toThrow(/expected unix:\/\/\/absolute\/path/);
    expect(() => dockerEngine({ DOCKER_HOST: 'tcp://h:2376', DOCKER_TLS_VERIFY: '1' })).toThrow(/TLS to the engine is not supported yet/);
  });
});

describe('ping and load against a fake engine on a unix socket', () => {
  let dir: string | undefined;
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A server on `dir/docker.sock` answering `/_ping` with `ping` and `/images/load` with `load` (after reading the body). */
  async function fakeEngine(ping: [number, string], load: (body: Buffer) => [number, string]) {
    dir = await mkdtemp(join(tmpdir(), 'bkt-fake-engine-'));
    const socket = join(dir, 'docker.sock');
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const [status, text] = req.url === '/_ping' ? ping : load(Buffer.concat(chunks));
        res.writeHead(status).end(text);
      });
    });
    await new Promise<void>((r) => server!.listen(socket, r));
    return dockerEngine({ DOCKER_HOST: `unix://${socket}` });
  }

  it('posts the archive and returns the engine\'s lines; an error in the stream is an error quoting it', async () => {
    let received = '';
    const engine = await fakeEngine([200, 'OK'], (body) => {
      received = body.toString();
      return body.toString() === 'tar bytes' ? [200, '{"stream":"Loaded image: app:v1\\n"}\n'] : [200, '{"errorDetail":{"message":"bad"},"error":"unexpected EOF"}\n'];
    });
    await pingDockerEngine(engine);
    const file = join(dir!, 'image.tar');
    await writeFile(file, 'tar bytes');
    expect(await loadIntoDockerEngine(engine, file)).toEqual(['Loaded image: app:v1']);
    expect(received).toBe('tar bytes');
    await writeFile(file, 'broken');
    await expect(loadIntoDockerEngine(engine, file)).rejects.toThrow(/--load: the Docker engine at unix:\/\/.*docker.sock refused the image: unexpected EOF/);
  });

  it('a ping that is not answered OK is an error naming the engine and the answer', async () => {
    const engine = await fakeEngine([500, 'daemon is starting'], () => [200, '']);
    await expect(pingDockerEngine(engine)).rejects.toThrow(/--load: no Docker engine reachable at unix:\/\/.*docker.sock \(DOCKER_HOST=.*\): \/_ping answered HTTP 500 daemon is starting/);
  });
});
