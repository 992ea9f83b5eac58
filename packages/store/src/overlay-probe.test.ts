import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountOf, overlayWorks } from './overlay-probe.js';
import { mountsUnder, unmount } from './sys.js';

const temps: string[] = [];
async function temp(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}
afterEach(async () => {
  for (const d of temps.splice(0)) await rm(d, { recursive: true, force: true });
});

// A probe leaves `<root>/mounts/<session>` behind (the store removes it on close); a marker's answer touches nothing.
const probed = (root: string) => existsSync(join(root, 'mounts'));

describe('overlay probe', () => {
  it('mounts once per filesystem: a later root on it is answered by the marker', async () => {
    const cache = { dir: join(await temp('bkt-probe-cache-'), 'markers') };
    const first = await temp('bkt-probe-root-');
    expect(await overlayWorks(first, 's1', cache)).toBe(true);
    expect(probed(first)).toBe(true);
    expect(await mountsUnder(first)).toEqual([]);
    expect(await readdir(cache.dir)).toHaveLength(1);

    const second = await temp('bkt-probe-root-');
    expect(await overlayWorks(second, 's2', cache)).toBe(true);
    expect(probed(second)).toBe(false);
  });

  it('does not believe a marker others may write, nor one in a directory others may write', async () => {
    const cache = { dir: join(await temp('bkt-probe-cache-'), 'markers') };
    expect(await overlayWorks(await temp('bkt-probe-root-'), 's1', cache)).toBe(true);
    const [marker] = await readdir(cache.dir);

    await chmod(join(cache.dir, marker), 0o666);
    const a = await temp('bkt-probe-root-');
    expect(await overlayWorks(a, 's2', cache)).toBe(true);
    expect(probed(a)).toBe(true);

    // The probe above rewrote the marker (0600); now the directory is opened up.
    await chmod(cache.dir, 0o777);
    const b = await temp('bkt-probe-root-');
    expect(await overlayWorks(b, 's3', cache)).toBe(true);
    expect(probed(b)).toBe(true);
  });

  it('without a cache, every root is probed', async () => {
    const root = await temp('bkt-probe-root-');
    expect(await overlayWorks(root, 's1', null)).toBe(true);
    expect(probed(root)).toBe(true);
  });

  it('probes again on the same device once the mount differs (other options)', async () => {
    const cache = { dir: join(await temp('bkt-probe-cache-'), 'markers') };
    const point = await temp('bkt-probe-mnt-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'bkt-probe-test', point]);
    try {
      const first = join(point, 'a');
      await mkdir(first);
      expect(await overlayWorks(first, 's1', cache)).toBe(true);
      expect(probed(first)).toBe(true);
      const dev = (await stat(point)).dev;

      const same = join(point, 'b');
      await mkdir(same);
      expect(await overlayWorks(same, 's2', cache)).toBe(true);
      expect(probed(same)).toBe(false);

      execFileSync('mount', ['-o', 'remount,size=16m', point]);
      expect((await stat(point)).dev).toBe(dev);
      const remounted = join(point, 'c');
      await mkdir(remounted);
      expect(await overlayWorks(remounted, 's3', cache)).toBe(true);
      expect(probed(remounted)).toBe(true);
    } finally {
      await unmount(point);
    }
  });
});

describe('mountOf', () => {
  const info = [
    '22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '30 22 0:30 / /srv rw - tmpfs tmpfs rw,size=10m',
    '31 30 0:31 /data /srv/my\\040dir ro,nosuid - xfs /dev/sdb1 ro,attr2',
    '32 30 0:32 / /srv rw master:4 - tmpfs other rw,size=20m',
    '',
  ].join('\n');

  it('gives the fields of the deepest mount at or above the path, the last listed of equals', () => {
    expect(mountOf(info, '/home/x')).toBe('22 0:21 / / rw,relatime ext4 /dev/sda1 rw');
    expect(mountOf(info, '/srv')).toBe('32 0:32 / /srv rw tmpfs other rw,size=20m');
    expect(mountOf(info, '/srvx')).toBe('22 0:21 / / rw,relatime ext4 /dev/sda1 rw');
    expect(mountOf(info, '/srv/my dir/store')).toBe('31 0:31 /data /srv/my\\040dir ro,nosuid xfs /dev/sdb1 ro,attr2');
  });

  it('is undefined when no mount covers the path', () => {
    expect(mountOf(info.split('\n').slice(1).join('\n'), '/home/x')).toBeUndefined();
  });
});
