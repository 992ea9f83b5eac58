/**
 * An empty `--llb` file (or empty standard input) is an error naming it, not
 * a silent success: exit 1, and no store is written.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('security-empty-llb');
  await writeFile(join(work, 'empty.pb'), '');
});

afterAll(async () => {
  if (work) await removeDir(work);
});

describe('an empty definition', () => {
  it('from a file', async () => {
    const root = join(work, 'store-file');
    const r = await bkt(['build', '--llb', 'empty.pb', '--root', root], { cwd: work });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--llb empty.pb: empty definition ("empty.pb" is empty; expected a marshalled pb.Definition)');
    expect(existsSync(root)).toBe(false);
  });

  it('from standard input', async () => {
    const root = join(work, 'store-stdin');
    const r = await bkt(['build', '--llb', '-', '--root', root], { cwd: work, input: '' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--llb -: empty definition (standard input was empty');
    expect(existsSync(root)).toBe(false);
  });
});
