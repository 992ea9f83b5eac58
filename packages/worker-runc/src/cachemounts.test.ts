import { chmod, chown, lchown, lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@bkt/api/pb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CacheMounts } from './cachemounts.js';
import { openHarness, runStep, type Harness } from './harness.test-util.js';

/** `mode uid gid` of a path, as `stat -c '%a %u %g'` prints it. */
async function owner(path: string): Promise<string> {
  const s = await lstat(path);
  return `${(s.mode & 0o7777).toString(8)} ${s.uid} ${s.gid}`;
}

describe('CacheMounts: a new cache directory', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-cachemounts-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('without a base is an empty 755 root-owned directory', async () => {
    const held = await new CacheMounts(join(dir, 'plain')).acquire({ id: 'plain', sharing: 'shared' });
    expect(await owner(held.path)).toBe('755 0 0');
    await held.release();
  });

  // The Dockerfile frontend's `mode=0700,uid=1000,gid=50` arrives as a base: a scratch snapshot with `mkdir /cache` so moded and owned.
  it('seeded from a base takes the top directory mode and owner, and every entry owner, mode and link', async () => {
    const base = join(dir, 'base');
    await mkdir(join(base, 'sub'), { recursive: true });
    await writeFile(join(base, 'sub', 'f'), 'seed');
    await chown(join(base, 'sub', 'f'), 1001, 51);
    await chmod(join(base, 'sub', 'f'), 0o640);
    await chown(join(base, 'sub'), 1002, 52);
    await chmod(join(base, 'sub'), 0o750);
    await symlink('sub/f', join(base, 'l'));
    await lchown(join(base, 'l'), 1003, 53);
    await chown(base, 1000, 50);
    await chmod(base, 0o700);

    const store = new CacheMounts(join(dir, 'seeded'));
    const held = await store.acquire({ id: 'owned', sharing: 'private', base: { key: 'snap1', path: base } });
    expect(await owner(held.path)).toBe('700 1000 50');
    expect(await owner(join(held.path, 'sub'))).toBe('750 1002 52');
    expect(await owner(join(held.path, 'sub', 'f'))).toBe('640 1001 51');
    expect(await owner(join(held.path, 'l'))).toBe('777 1003 53');
    expect(await readFile(join(held.path, 'l'), 'utf8')).toBe('seed');
    await writeFile(join(held.path, 'added'), 'kept');
    await held.release();

    // The same cache again: not re-seeded, its changes kept.
    await chmod(base, 0o755);
    const again = await store.acquire({ id: 'owned', sharing: 'private', base: { key: 'snap1', path: base } });
    expect(again.path).toBe(held.path);
    expect(await owner(again.path)).toBe('700 1000 50');
    expect(await readFile(join(again.path, 'added'), 'utf8')).toBe('kept');
    await again.release();
  });
});

describe('CACHE mounts in a step', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await openHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  const cache = (dest: string, id: string, readonly = false) => ({
    dest,
    input: -1,
    output: -1,
    readonly,
    mountType: pb.MountType.CACHE,
    cacheOpt: { ID: id, sharing: pb.CacheSharingOpt.SHARED },
  });

  it('readonly: the step cannot change the cache, and a writable mount of the same cache still can', async () => {
    await runStep(h, 'echo kept > /c/f', { mounts: [cache('/c', 'ro-test')] });
    const ro = await runStep(h, 'cat /ro/f; (touch /ro/x 2>/dev/null && echo writable || echo read-only); grep " /ro " /proc/mounts | grep -q "[ ,]ro[ ,]" && echo ro-mount', {
      mounts: [cache('/ro', 'ro-test', true)],
    });
    expect(ro.stdout).toBe('kept\nread-only\nro-mount\n');
    const rw = await runStep(h, 'touch /c/x && ls /c', { mounts: [cache('/c', 'ro-test')] });
    expect(rw.stdout).toBe('f\nx\n');
  });

  it('a base moded and owned as asked (mode=0700,uid=1000,gid=50) is what the step sees', async () => {
    const perms = (await runStep(h, 'mkdir /cache && chown 1000:50 /cache && chmod 700 /cache')).outputs[0]!;
    const res = await runStep(h, "stat -c '%a %u %g' /owned", {
      inputs: [{ snapshot: h.base }, { snapshot: perms }],
      mounts: [{ ...cache('/owned', 'owned-test'), input: 1, selector: '/cache' }],
    });
    expect(res.stdout).toBe('700 1000 50\n');
  });
});
