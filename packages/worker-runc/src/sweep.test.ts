/**
 * `sweepStaleContainers` over a store root's worker directory: nothing to
 * do (no runc state, bundles or run dirs) runs no runc at all; otherwise what
 * dead processes left is removed and live ones' is left alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sweepStaleContainers } from './index.js';

/** A runc that cannot start: a sweep that runs it fails. */
const NO_RUNC = '/nonexistent/bkt-test-runc';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-sweep-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' });
  return Number(child.stdout.trim());
}

describe('sweepStaleContainers', () => {
  it('runs no runc when the worker directory is absent or its directories are empty', async () => {
    expect(await sweepStaleContainers(root, { runc: NO_RUNC })).toEqual([]);
    for (const d of ['state', 'bundles', 'mounts']) await mkdir(join(root, 'runc', d), { recursive: true });
    expect(await sweepStaleContainers(root, { runc: NO_RUNC })).toEqual([]);
  });

  it('lists runc state that is there (a sweep that skipped it would resolve)', async () => {
    await mkdir(join(root, 'runc', 'state', `bkt-${deadPid()}-x`), { recursive: true });
    await expect(sweepStaleContainers(root, { runc: NO_RUNC })).rejects.toThrow();
  });

  it("removes a dead process's bundle and run dir, and leaves a live process's", async () => {
    const dead = `bkt-${deadPid()}-x`;
    const live = `bkt-${process.pid}-x`;
    for (const d of ['bundles', 'mounts']) {
      for (const id of [dead, live]) await mkdir(join(root, 'runc', d, id, 'rootfs'), { recursive: true });
    }
    expect(await sweepStaleContainers(root, { runc: NO_RUNC })).toEqual([]);
    for (const d of ['bundles', 'mounts']) {
      expect(existsSync(join(root, 'runc', d, dead))).toBe(false);
      expect(existsSync(join(root, 'runc', d, live))).toBe(true);
    }
  });
});
