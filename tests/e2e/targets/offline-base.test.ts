/**
 * examples/offline-base works as its README says, without internet: one
 * command (`./setup.sh`) starts Debian's docker-registry on 127.0.0.1 and
 * pushes busybox:latest made by bkt from busybox-static; skopeo reads it, a
 * target FROM it builds (its RUN step in runc), and runc runs that image
 * with the command its config inherited and set; `./setup.sh stop` stops the
 * registry.
 */
import { cp, mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { skopeoInspect } from '@bkt/testkit';
import { BKT, REPO, removeDir, tempDir } from '../helpers.js';
import { bktEnv, run, runcRun } from '../images/lib.js';
import { ociArchiveConfig } from './lib.js';

let work: string;
let example: string;
let port: number;

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

const setup = (...args: string[]) =>
  execa('sh', ['setup.sh', ...args], { cwd: example, reject: false, env: { PORT: String(port), BKT: `node ${BKT}` }, timeout: 180_000 });

beforeAll(async () => {
  work = await tempDir('targets-offline-base');
  example = join(work, 'offline-base');
  await cp(join(REPO, 'examples/offline-base'), example, { recursive: true, filter: (src) => !/\.registry$|\.tar$/.test(src) });
  port = await freePort();
});

afterAll(async () => {
  if (example) {
    // The registry setup.sh started, even when a test failed before stopping it.
    const pid = await readFile(join(example, '.registry/registry.pid'), 'utf8').catch(() => undefined);
    if (pid) {
      try {
        process.kill(Number(pid), 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
  if (work) await removeDir(work);
});

describe('examples/offline-base', () => {
  it('./setup.sh serves busybox:latest, built by bkt from busybox-static, on a local registry', async () => {
    const r = await setup('--root', join(work, 'store'), '--progress', 'plain');
    expect(r.stderr + r.stdout).toMatch(/solver time/);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}/library/busybox:latest is ready`));
    const info = (await skopeoInspect(`127.0.0.1:${port}/library/busybox:latest`)) as { Env: string[]; Os: string };
    expect(info.Os).toBe('linux');
    expect(info.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', '--config', `docker://127.0.0.1:${port}/library/busybox:latest`], { encoding: 'utf8' });
    expect((JSON.parse(stdout) as { config: { Cmd: string[] } }).config.Cmd).toEqual(['sh']);
  });

  it('an image FROM it builds (a RUN step in runc) and runs with its command, in runc', async () => {
    const r = await bktEnv(['build', 'hello', '--root', join(work, 'store'), '--progress', 'plain'], { cwd: example, env: { PORT: String(port) } });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const tar = join(example, 'hello.oci.tar');
    expect((await ociArchiveConfig(tar)).config).toMatchObject({ Cmd: ['cat', '/hello.txt'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] });
    const layout = join(work, 'layout');
    await mkdir(layout);
    await run('tar', ['-xf', tar, '-C', layout]);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
    expect(await runcRun(bundle)).toMatch(/^hello from busybox v\d+\.\d+\.\d+, offline\n$/);
  });

  it('./setup.sh stop stops the registry', async () => {
    const r = await setup('stop');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/stopped/);
    const probe = await execa('curl', ['-fsS', '-o', '/dev/null', `http://127.0.0.1:${port}/v2/`], { reject: false });
    expect(probe.exitCode).not.toBe(0);
  });
});
