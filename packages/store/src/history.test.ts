/** Build history in the store: builds of a process that died are marked interrupted. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, it, expect } from 'vitest';
import { __resetOpenRoots, Store } from './store.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-history-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

it('a build still running when its process died is marked interrupted when the store opens', async () => {
  const dead = await Store.open(root, 'copy');
  dead.history.start({ ref: 'orphan', frontend: 'dockerfile.v0' });
  expect(dead.history.list()[0]).toMatchObject({ ref: 'orphan', status: 'running' });
  // The process "dies": its connection goes, nothing is finished.
  dead.db.close();
  __resetOpenRoots(root);

  const store = await Store.open(root);
  try {
    const [b] = store.history.list();
    expect(b).toMatchObject({ ref: 'orphan', status: 'interrupted', frontend: 'dockerfile.v0', error: { code: 'INTERNAL' } });
    expect(b.error!.message).toContain('exited before it finished');
    expect(b.completedAt).toBeInstanceOf(Date);
  } finally {
    await store.close();
  }
});
