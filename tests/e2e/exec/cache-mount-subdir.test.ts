/**
 * `RUN --mount=type=cache,source=DIR` without `from=` (issue 10): the step
 * gets directory DIR of the cache (created, 0755 root, when missing), the
 * cache's other contents stay out of its sight, and what it writes there is
 * in the cache for later steps and builds.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('exec-cache-mount-subdir');
  await makeBusyboxRootfs(join(work, 'ctx/rootfs'));
  await writeFile(
    join(work, 'ctx/Dockerfile'),
    [
      'FROM scratch',
      'COPY rootfs/ /',
      'RUN --mount=type=cache,id=subdir,target=/c echo top > /c/top-file',
      "RUN --mount=type=cache,id=subdir,target=/c,source=sub/deeper echo one > /c/file && stat -c '%a %u:%g' /c > /sub-mode && ls -a /c > /sub-list",
      'RUN --mount=type=cache,id=subdir,target=/whole find /whole | sort > /whole-list',
      'RUN --mount=type=cache,id=subdir,target=/c,source=/sub/./deeper/,readonly (touch /c/x 2>/dev/null && echo writable || echo read-only) > /ro && cat /c/file > /ro-seen',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await removeDir(work);
});

describe('RUN --mount=type=cache,source= without from=', () => {
  it('mounts that directory of the cache, made when missing', async () => {
    const out = join(work, 'out');
    const r = await bkt(['build', '--root', join(work, 'store'), '--progress', 'plain', '-o', `type=local,dest=${out}`, 'ctx'], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    const read = (name: string) => readFile(join(out, name), 'utf8');
    expect(await read('sub-mode')).toBe('755 0:0\n');
    expect((await read('sub-list')).split('\n').filter(Boolean)).toEqual(['.', '..', 'file']);
    expect((await read('whole-list')).split('\n').filter(Boolean)).toEqual(['/whole', '/whole/sub', '/whole/sub/deeper', '/whole/sub/deeper/file', '/whole/top-file']);
    expect(await read('ro')).toBe('read-only\n');
    expect(await read('ro-seen')).toBe('one\n');
  });

  it('a later build sees what an earlier one wrote there', async () => {
    await writeFile(
      join(work, 'ctx/Dockerfile.again'),
      ['FROM scratch', 'COPY rootfs/ /', 'RUN --mount=type=cache,id=subdir,target=/c,source=sub cat /c/deeper/file > /again', ''].join('\n'),
    );
    const out = join(work, 'out-again');
    const r = await bkt(['build', '--root', join(work, 'store'), '--progress', 'plain', '-f', join(work, 'ctx/Dockerfile.again'), '-o', `type=local,dest=${out}`, 'ctx'], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(out, 'again'), 'utf8')).toBe('one\n');
  });
});
