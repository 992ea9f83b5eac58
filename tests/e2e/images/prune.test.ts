/**
 * Blob references through the built CLI: an image the `image` exporter stored
 * by name (store=true) keeps all its blobs through `bkt prune` and
 * `bkt prune --all`, while blobs nothing references (the pulled base's
 * manifest and config) are removed.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, corruptBlobs, readMetadata, writeImageProject } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let project: string;
let root: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-prune');
  project = join(work, 'project');
  root = join(work, 'store');
  await mkdir(project);
  await writeImageProject(project, busybox.reference, ['echo kept > /kept.txt']);
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const blobPath = (digest: string) => join(root, 'content/blobs/sha256', digest.slice('sha256:'.length));
const hasBlob = (digest: string) => readFile(blobPath(digest)).then(() => true, () => false);
const cli = (args: string[]) => bktEnv([...args, '--root', root], { cwd: project });

describe('prune and stored images', () => {
  it('keeps every blob of a stored image, and removes the blobs nothing references', async () => {
    const name = `${registry.host}/e2e/kept:v1`;
    const meta = join(work, 'meta.json');
    const built = await cli(['build', '--output', `type=image,name=${name}`, '--metadata-file', meta]);
    expect(built.stderr).not.toMatch(/^error/im);
    expect(built.code).toBe(0);
    const digest = (await readMetadata(meta))['containerimage.digest']!;
    const manifest = JSON.parse(await readFile(blobPath(digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
    const imageBlobs = [digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
    expect(manifest.layers.map((l) => l.digest)[0]).toBe(busybox.layer.digest);
    for (const d of [...imageBlobs, busybox.manifest.digest, busybox.config.digest]) expect(await hasBlob(d)).toBe(true);

    const pruned = await cli(['prune']);
    expect(pruned.stderr).toBe('');
    expect(pruned.code).toBe(0);
    // The pulled base's manifest and config are nobody's: gone, and listed.
    expect(await hasBlob(busybox.manifest.digest)).toBe(false);
    expect(await hasBlob(busybox.config.digest)).toBe(false);
    expect(pruned.stdout).toContain(busybox.config.digest);
    for (const d of imageBlobs) expect(await hasBlob(d)).toBe(true);

    const all = await cli(['prune', '--all']);
    expect(all.code).toBe(0);
    for (const d of imageBlobs) expect(await hasBlob(d)).toBe(true);
    expect(all.stdout).not.toContain(digest);
    expect(await corruptBlobs(root)).toEqual([]);

    // What remains is listed as used by the name.
    const du = await cli(['du', '--verbose']);
    expect(du.code).toBe(0);
    expect(du.stdout).toContain(`content blob, used by image:${name}`);
  });
});
