/**
 * A cache mount seeded `from=` a stage whose `source=` path is missing (or
 * is a file) fails with a clear error naming the mount's target and source
 * (issue 8, defect 8), not with `cp`'s message; the same build with an
 * existing source succeeds.
 */
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('security-cache-mount-source');
  await mkdir(join(work, 'ctx/rootfs/bin'), { recursive: true });
  await mkdir(join(work, 'ctx/rootfs/seed'));
  await writeFile(join(work, 'ctx/rootfs/seed/file'), 'seeded\n');
  await copyFile('/bin/busybox', join(work, 'ctx/rootfs/bin/busybox'));
  await symlink('busybox', join(work, 'ctx/rootfs/bin/sh'));
  await symlink('busybox', join(work, 'ctx/rootfs/bin/cat'));
});

afterAll(async () => {
  await removeDir(work);
});

async function buildWithSource(source: string) {
  await writeFile(
    join(work, 'ctx/Dockerfile'),
    [
      'FROM scratch AS seed',
      'COPY rootfs/ /',
      'FROM scratch',
      'COPY rootfs/ /',
      `RUN --mount=type=cache,target=/cache,id=c-${source.replace(/\W/g, '')},from=seed,source=${source} cat /cache/file`,
      '',
    ].join('\n'),
  );
  return bkt(['build', '--root', join(work, 'store'), '--progress', 'plain', 'ctx'], { cwd: work });
}

describe('RUN --mount=type=cache,from=…,source=…', () => {
  it('an existing directory seeds the cache', async () => {
    const r = await buildWithSource('/seed');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\d seeded$/m);
  });

  it('a missing source is an error naming the mount and the path', async () => {
    const r = await buildWithSource('/no/such/dir');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*cache mount \/cache \(from= input \d+, source=\/no\/such\/dir\): \/no\/such\/dir does not exist in the from= input/m);
    expect(r.stderr).not.toMatch(/\bcp\b/);
  });

  it('a source that is a file is an error naming the mount and the path', async () => {
    const r = await buildWithSource('/seed/file');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*cache mount \/cache \(from= input \d+, source=\/seed\/file\): \/seed\/file in the from= input is not a directory/m);
    expect(r.stderr).not.toMatch(/\bcp\b/);
  });
});
