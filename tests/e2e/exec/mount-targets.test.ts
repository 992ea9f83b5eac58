/**
 * Relative `RUN --mount` targets (issue 10), as BuildKit places them: cache,
 * bind and tmpfs targets under the working directory (under `/` without a
 * WORKDIR); secret targets under `/` (BuildKit's frontend passes them on as
 * written, and runc places a relative destination under the root).
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

/** `1` when `point` is a mount point of the step (mountinfo's fifth field). */
const mounted = (point: string, file: string) => `awk '$5 == "${point}"' /proc/self/mountinfo | wc -l > ${file}`;

beforeAll(async () => {
  work = await tempDir('exec-mount-targets');
  await makeBusyboxRootfs(join(work, 'ctx/rootfs'));
  await writeFile(join(work, 'ctx/hello'), 'from the context\n');
  await writeFile(join(work, 'token'), 's3cret-token\n');
  await writeFile(
    join(work, 'ctx/Dockerfile'),
    [
      'FROM scratch',
      'COPY rootfs/ /',
      `RUN --mount=type=cache,id=rel-root,target=cache echo root > cache/written && ${mounted('/cache', '/root-mounted')}`,
      'WORKDIR /app',
      `RUN --mount=type=cache,id=rel-app,target=cache echo app > cache/written && ${mounted('/app/cache', '/app-mounted')}`,
      'RUN --mount=type=bind,target=ctx cat ctx/hello > /bind-seen',
      `RUN --mount=type=tmpfs,target=./scratch/../tmpfs ${mounted('/app/tmpfs', '/tmpfs-mounted')}`,
      'RUN --mount=type=secret,id=tok,target=tok cat /tok > /secret-seen',
      'RUN --mount=type=cache,id=rel-app,target=/probe cat /probe/written > /app-cache-seen',
      'RUN --mount=type=cache,id=rel-root,target=/probe cat /probe/written > /root-cache-seen',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await removeDir(work);
});

describe('relative RUN --mount targets', () => {
  it('cache, bind and tmpfs land under WORKDIR (or /), a secret under /', async () => {
    const out = join(work, 'out');
    const r = await bkt(
      ['build', '--root', join(work, 'store'), '--progress', 'plain', '--secret', 'id=tok,src=token', '-o', `type=local,dest=${out}`, 'ctx'],
      { cwd: work },
    );
    expect(r.code, r.stderr).toBe(0);
    const read = (name: string) => readFile(join(out, name), 'utf8');
    expect(await read('root-mounted')).toBe('1\n');
    expect(await read('app-mounted')).toBe('1\n');
    expect(await read('tmpfs-mounted')).toBe('1\n');
    expect(await read('bind-seen')).toBe('from the context\n');
    expect(await read('secret-seen')).toBe('s3cret-token\n');
    // What was written through the relative targets is in the caches, not in the image.
    expect(await read('root-cache-seen')).toBe('root\n');
    expect(await read('app-cache-seen')).toBe('app\n');
    expect(existsSync(join(out, 'cache/written'))).toBe(false);
    expect(existsSync(join(out, 'app/cache/written'))).toBe(false);
    expect(await readdir(join(out, 'app')).catch(() => [])).not.toContain('tok');
  });
});
