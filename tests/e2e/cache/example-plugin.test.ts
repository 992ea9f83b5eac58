/**
 * examples/cache-plugin: a third-party cache backend (`type=bucket`) plugged
 * into the core's cache-backend registry from a project's config: an export,
 * then an empty store building every step CACHED from it.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, removeDir, tempDir, vertices } from '../helpers.js';
import { bktEnv } from '../images/lib.js';

const EXAMPLE = join(REPO, 'examples/cache-plugin');
let work: string;

beforeAll(async () => {
  work = await tempDir('cache-example');
});

afterAll(async () => {
  if (work) await removeDir(work);
});

const build = (root: string, args: string[]) =>
  bktEnv(['build', '--root', join(work, root), '--progress', 'rawjson', '--output', `type=local,dest=${join(work, `out-${root}`)}`, ...args], {
    cwd: EXAMPLE,
    env: { BKT_EXAMPLE_BUCKET: join(work, 'bucket') },
  });

describe('examples/cache-plugin (type=bucket)', () => {
  it('exports to the bucket; an empty store builds every step CACHED from it', async () => {
    const a = await build('a', ['--cache-to', 'type=bucket,name=app,mode=max']);
    expect(a.code, a.stderr).toBe(0);
    expect(await readdir(join(work, 'bucket', 'caches'))).toEqual(['app.json']);
    expect((await readdir(join(work, 'bucket', 'blobs'))).length).toBeGreaterThan(0);
    const b = await build('b', ['--cache-from', 'type=bucket,name=app']);
    expect(b.code, b.stderr).toBe(0);
    const steps = [...vertices(b.stderr).values()].filter((v) => !/^(importing cache|exporting cache)/.test(v.name));
    expect(steps.filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    expect(await readFile(join(work, 'out-b', 'message.txt'), 'utf8')).toBe('hello from the bucket example\n');
  });

  it("a bad attribute is the plugin's error, naming it", async () => {
    const r = await build('c', ['--cache-to', 'type=bucket,name=app,region=mars']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cache export type=bucket: unknown attribute "region"/);
  });
});
