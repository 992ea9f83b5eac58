/**
 * Owner ids over 262143 (the largest the ustar uid/gid fields hold) through a
 * real build: `COPY --chown=300000:2097152` gives a layer whose entries GNU tar
 * reads back with those owners (as Go's archive/tar writes them: the uid in
 * 7 octal digits, the gid, over 2097151, in a pax `gid` record), and a build
 * FROM the pushed image (its layers pulled and unpacked by bkt) sees them in
 * a RUN step under runc.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, run } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let root: string;

async function contextWith(name: string, dockerfile: string[], files: Record<string, string> = {}): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), [...dockerfile, ''].join('\n'));
  for (const [p, c] of Object.entries(files)) await writeFile(join(dir, p), c);
  return dir;
}

const build = (args: string[], context: string) => bktEnv(['build', '--root', root, '--progress', 'plain', ...args, context], { cwd: work });

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('large-owner-ids');
  root = join(work, 'store');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('owner ids over 262143', () => {
  it('COPY --chown=300000:2097152 keeps them in the layer tar and through a pull and unpack', async () => {
    const context = await contextWith('chown', [`FROM ${busybox.reference}`, 'COPY --chown=300000:2097152 f.txt /big/'], { 'f.txt': 'big owner\n' });
    const name = `${registry.host}/e2e/large-owner:v1`;
    const layout = join(work, 'layout');
    const r = await build(['-o', `type=oci,dest=${layout},tar=false`], context);
    expect(r.code, r.stderr).toBe(0);
    const pushed = await build(['-t', name, '--push'], context);
    expect(pushed.code, pushed.stderr).toBe(0);

    // The COPY's layer (the manifest's last) read by GNU tar.
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const blob = (d: string) => join(layout, 'blobs', ...d.split(':'));
    const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { layers: { digest: string }[] };
    const layer = blob(manifest.layers[manifest.layers.length - 1]!.digest);
    const { stdout } = await run('tar', ['--numeric-owner', '-tvzf', layer]);
    const owners = Object.fromEntries(stdout.trim().split('\n').map((l) => { const f = l.split(/\s+/); return [f[5], f[1]]; }));
    expect(owners).toMatchObject({ 'big/': '300000/2097152', 'big/f.txt': '300000/2097152' });

    // A build FROM the pushed image unpacks the layer with those owners.
    const out = join(work, 'out');
    const next = await contextWith('from-pushed', [`FROM ${name}`, 'RUN stat -c "%u:%g %n" /big /big/f.txt > /owners.txt', 'FROM scratch', 'COPY --from=0 /owners.txt /']);
    const r2 = await build(['-o', `type=local,dest=${out}`], next);
    expect(r2.code, r2.stderr).toBe(0);
    expect(await readFile(join(out, 'owners.txt'), 'utf8')).toBe('300000:2097152 /big\n300000:2097152 /big/f.txt\n');
  });
});
