/**
 * Issue 13: exportable cache mounts (moby/buildkit#1474, #1512). With
 * `cache-mounts=true` a cache export carries the contents of the build's
 * `RUN --mount=type=cache` mounts; importing it into another store with
 * `cache-mounts=true` restores them, so that store's RUN sees the first
 * store's files (an import without it restores none).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv } from '../images/lib.js';

let registry: RegistryServer;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-mounts');
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

async function project(name: string, run: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), `FROM ${registry.host}/library/busybox:latest\nRUN --mount=type=cache,target=/cache,id=shared-cache ${run}\n`);
  return dir;
}

const build = (dir: string, root: string, args: string[]) => bktEnv(['build', '--root', join(work, root), '--progress', 'plain', ...args, dir], { cwd: dir, timeoutMs: 240_000 });

describe('--cache-to …,cache-mounts=true', () => {
  it("restores the first store's cache mount in another store: its RUN sees the files", async () => {
    const writer = await project('writer', `sh -c 'mkdir -p /cache/deps && echo "downloaded by store A" > /cache/deps/pkg.txt'`);
    const ref = `${registry.host}/cache/mounts:latest`;
    const a = await build(writer, 'store-a', ['--cache-to', `type=registry,ref=${ref},mode=max,cache-mounts=true`]);
    expect(a.code, a.stderr).toBe(0);

    // Another project (nothing of it is cached) on an empty store, importing the cache with cache-mounts=true.
    const reader = await project('reader', `sh -c 'cat /cache/deps/pkg.txt > /seen'`);
    const out = join(work, 'out-b');
    const b = await build(reader, 'store-b', ['--cache-from', `type=registry,ref=${ref},cache-mounts=true`, '--output', `type=local,dest=${out}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(await readFile(join(out, 'seen'), 'utf8')).toBe('downloaded by store A\n');
  });

  it('restores only the cache mounts the build declares: another ID the cache carries stays out of the store', async () => {
    const writer = join(work, 'writer-two');
    await mkdir(writer, { recursive: true });
    await writeFile(
      join(writer, 'Dockerfile'),
      [
        `FROM ${registry.host}/library/busybox:latest`,
        `RUN --mount=type=cache,target=/cache,id=declared-cache sh -c 'echo declared > /cache/d.txt'`,
        `RUN --mount=type=cache,target=/other,id=undeclared-cache sh -c 'echo undeclared > /other/u.txt'`,
        '',
      ].join('\n'),
    );
    const ref = `${registry.host}/cache/two-mounts:latest`;
    const a = await build(writer, 'store-two-a', ['--cache-to', `type=registry,ref=${ref},mode=max,cache-mounts=true`]);
    expect(a.code, a.stderr).toBe(0);

    const reader = await project('reader-declared', `sh -c 'cat /cache/d.txt > /seen'`);
    const readerDockerfile = await readFile(join(reader, 'Dockerfile'), 'utf8');
    await writeFile(join(reader, 'Dockerfile'), readerDockerfile.replace('id=shared-cache', 'id=declared-cache'));
    const out = join(work, 'out-declared');
    const b = await build(reader, 'store-two-b', ['--cache-from', `type=registry,ref=${ref},cache-mounts=true`, '--output', `type=local,dest=${out}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(await readFile(join(out, 'seen'), 'utf8')).toBe('declared\n');

    // The same store, no import: a step using the other ID finds it empty (the import did not restore it).
    const other = join(work, 'uses-other');
    await mkdir(other, { recursive: true });
    await writeFile(join(other, 'Dockerfile'), `FROM ${registry.host}/library/busybox:latest\nRUN --mount=type=cache,target=/other,id=undeclared-cache sh -c 'ls -A /other > /seen'\n`);
    const out2 = join(work, 'out-other');
    const c = await build(other, 'store-two-b', ['--output', `type=local,dest=${out2}`]);
    expect(c.code, c.stderr).toBe(0);
    expect(await readFile(join(out2, 'seen'), 'utf8')).toBe('');
  });

  it('an import without cache-mounts=true restores none of the mounts the cache carries', async () => {
    // The cache of the test above carries shared-cache; this store has no cache mount of that ID.
    const ref = `${registry.host}/cache/mounts:latest`;
    const reader = await project('reader-no-opt-in', `sh -c 'ls -A /cache > /seen'`);
    const out = join(work, 'out-b2');
    const b = await build(reader, 'store-b2', ['--cache-from', `type=registry,ref=${ref}`, '--output', `type=local,dest=${out}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(await readFile(join(out, 'seen'), 'utf8')).toBe('');
  });

  it('cache-mounts on an import is a boolean, refused otherwise naming the attribute', async () => {
    const dir = await project('bad-attr', 'true');
    const r = await build(dir, 'store-b3', ['--cache-from', `type=registry,ref=${registry.host}/cache/mounts:latest,cache-mounts=yes`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cache import type=registry: attribute cache-mounts must be true or false, got "yes"/);
  });

  it('without cache-mounts=true the export carries none: the other store starts empty', async () => {
    const writer = await project('writer2', `sh -c 'echo two > /cache/two.txt'`);
    const ref = `${registry.host}/cache/no-mounts:latest`;
    expect((await build(writer, 'store-c', ['--cache-to', `type=registry,ref=${ref},mode=max`])).code).toBe(0);
    const reader = await project('reader2', `sh -c 'ls /cache > /seen'`);
    const out = join(work, 'out-d');
    const d = await build(reader, 'store-d', ['--cache-from', `type=registry,ref=${ref}`, '--output', `type=local,dest=${out}`]);
    expect(d.code, d.stderr).toBe(0);
    expect(await readFile(join(out, 'seen'), 'utf8')).toBe('');
  });

  it('a store keeps its own cache mount: an import never replaces it', async () => {
    const ref = `${registry.host}/cache/mounts:latest`;
    const own = await project('own', `sh -c 'mkdir -p /cache/deps && echo "store E" > /cache/deps/pkg.txt'`);
    expect((await build(own, 'store-e', [])).code).toBe(0);
    const reader = await project('reader3', `sh -c 'cat /cache/deps/pkg.txt > /seen'`);
    const out = join(work, 'out-e');
    const e = await build(reader, 'store-e', ['--cache-from', `type=registry,ref=${ref},cache-mounts=true`, '--output', `type=local,dest=${out}`]);
    expect(e.code, e.stderr).toBe(0);
    expect(await readFile(join(out, 'seen'), 'utf8')).toBe('store E\n');
  });

  it('is refused for type=inline, naming the attribute', async () => {
    const dir = await project('inline', 'true');
    const r = await build(dir, 'store-f', ['--cache-to', 'type=inline,cache-mounts=true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cache export type=inline: cache-mounts=true needs type=registry or type=local/);
  });
});
