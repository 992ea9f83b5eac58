/** `bkt history rm`, `pin` and `unpin` over a real store whose history holds a few finished builds. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Store } from '@bkt/store';
import { main } from '../program.js';

let work: string;
let root: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-cli-history-update-'));
  root = join(work, 'store');
  const store = await Store.open(root, 'copy');
  try {
    for (const ref of ['alpha111', 'beta222', 'gamma333']) await store.history.start({ ref }).finish({});
  } finally {
    await store.close();
  }
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function bkt(...args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main([...args, '--root', root], {
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: work,
  });
  return { code, stdout, stderr };
}

const listed = async () => (await bkt('history', 'ls', '--format', 'json')).stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { ref: string; pinned: boolean });

it('pin and unpin a build named by a prefix: ls and inspect show the pin', async () => {
  expect(await bkt('history', 'pin', 'bet')).toMatchObject({ code: 0, stdout: 'beta222\n' });
  expect((await listed()).map((r) => [r.ref, r.pinned])).toEqual([
    ['gamma333', false],
    ['beta222', true],
    ['alpha111', false],
  ]);
  expect((await bkt('history', 'inspect', 'beta222')).stdout).toMatch(/^Pinned: +yes/m);
  expect(await bkt('history', 'unpin', 'beta222')).toMatchObject({ code: 0, stdout: 'beta222\n' });
  expect((await listed()).find((r) => r.ref === 'beta222')?.pinned).toBe(false);
  expect((await bkt('history', 'inspect', 'beta222')).stdout).not.toContain('Pinned:');
});

it('rm removes each build named (ref, prefix, ^N), printing its ref; a REF naming no build removes nothing', async () => {
  const refused = await bkt('history', 'rm', 'alpha111', 'nope');
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('no build "nope" in the history of');
  expect((await listed()).map((r) => r.ref)).toEqual(['gamma333', 'beta222', 'alpha111']);

  expect(await bkt('history', 'rm', 'gam', '^2')).toMatchObject({ code: 0, stdout: 'gamma333\nalpha111\n' });
  expect((await listed()).map((r) => r.ref)).toEqual(['beta222']);
  expect((await bkt('history', 'rm')).code).toBe(1);
});
