import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { overlayWorks } from './overlay-probe.js';
import { mountsUnder } from './sys.js';

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
});
