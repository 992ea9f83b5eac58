/**
 * Issue 10, buildx's output flags through the built CLI, against the test
 * registry's busybox and real runc: `--annotation` (checked with
 * `skopeo inspect --raw` of the pushed manifest), `-o type=cacheonly`,
 * `--provenance` / `--sbom` refused as not yet supported, and
 * `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]` read from a layout
 * on disk.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, storeFingerprint, tempDir, vertices } from '../helpers.js';
import { bktEnv, readMetadata } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let root: string;

/** A context directory under `work` holding `Dockerfile` (lines joined). */
async function contextWith(name: string, dockerfile: string[]): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), [...dockerfile, ''].join('\n'));
  return dir;
}

const build = (args: string[], context: string, progress = 'plain') =>
  bktEnv(['build', '--root', root, '--progress', progress, ...args, context], { cwd: work });

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-flags');
  root = join(work, 'store');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('--annotation', () => {
  it('annotates the pushed manifest (KEY=VALUE and manifest:KEY=VALUE), with OCI media types', async () => {
    const context = await contextWith('annotated', [`FROM ${busybox.reference}`, 'RUN echo annotated > /a.txt']);
    const name = `${registry.host}/e2e/annotated:v1`;
    const r = await build(
      ['-t', name, '--push', '--annotation', 'org.opencontainers.image.title=bkt e2e', '--annotation', 'manifest:org.example.level=manifest'],
      context,
    );
    expect(r.stderr).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    const raw = (await skopeoInspect(name, { raw: true })) as { mediaType: string; annotations?: Record<string, string> };
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(raw.annotations).toEqual({ 'org.opencontainers.image.title': 'bkt e2e', 'org.example.level': 'manifest' });
    // The build ended naming what it stored and pushed, with the pushed digest.
    const { Digest } = (await skopeoInspect(name)) as { Digest: string };
    expect(r.stderr).toContain(`\nnaming to ${name}@${Digest} done\npushing ${name}@${Digest} done\n`);
  });

  it('refuses a bad annotation, naming it, before building anything', async () => {
    const context = await contextWith('annotated-bad', [`FROM ${busybox.reference}`]);
    const r = await build(['-t', 'x', '--annotation', 'layer:k=v'], context);
    expect(r.stderr).toMatch(/^error: --annotation layer:k=v: unknown annotation type "layer" \(known: manifest, manifest-descriptor, index, index-descriptor\)$/m);
    expect(r.code).toBe(1);
  });
});

describe('-o type=cacheonly', () => {
  it('builds (the steps run and are cached) and exports nothing, not even with -t', async () => {
    const context = await contextWith('cacheonly', [`FROM ${busybox.reference}`, 'RUN echo "only in the cache" > /c.txt']);
    const images = async () => (await bktEnv(['images', '-q', '--root', root], { cwd: work })).stdout;
    const storedBefore = await images();
    const r = await build(['-t', 'cacheonly:v1', '-o', 'type=cacheonly'], context, 'rawjson');
    expect(r.code).toBe(0);
    const ran = [...vertices(r.stderr).values()].find((v) => v.name.includes('RUN echo'));
    expect(ran).toMatchObject({ cached: false, completed: expect.any(String) });
    expect(r.stderr).not.toMatch(/no output specified|naming to|writing image/);
    expect(await images()).toBe(storedBefore);
    // The next build of the same Dockerfile takes the step from the cache.
    const out = join(work, 'cacheonly-out');
    const again = await build(['-o', `type=local,dest=${out}`], context, 'rawjson');
    expect(again.code).toBe(0);
    expect([...vertices(again.stderr).values()].find((v) => v.name.includes('RUN echo'))?.cached).toBe(true);
    expect(await readFile(join(out, 'c.txt'), 'utf8')).toBe('only in the cache\n');
  });

  it('takes no attributes', async () => {
    const context = await contextWith('cacheonly-attr', [`FROM ${busybox.reference}`]);
    const r = await build(['-o', 'type=cacheonly,dest=x'], context);
    expect(r.stderr).toMatch(/^error: --output type=cacheonly takes no attributes \(got dest\)$/m);
    expect(r.code).toBe(1);
  });
});

describe('--provenance and --sbom', () => {
  it('are refused with an error naming the flag (never "unknown option"), leaving the store as it was', async () => {
    const context = await contextWith('attest', [`FROM ${busybox.reference}`, 'RUN echo attest > /x']);
    await build(['-o', 'type=cacheonly'], context); // a populated store to compare against
    const before = await storeFingerprint(root);
    for (const [args, flag] of [
      [['--provenance=mode=max'], '--provenance'],
      [['--provenance'], '--provenance'],
      [['--sbom=true'], '--sbom'],
      [['--sbom'], '--sbom'],
    ] as const) {
      const r = await build([...args], context);
      expect(r.stderr).toBe(`error: ${flag}: attestations (provenance, SBOM) are not supported yet; they are coming. Build without ${flag} (or with ${flag}=false)\n`);
      expect(r.code).toBe(1);
    }
    expect(await storeFingerprint(root)).toEqual(before);
    // Asking for none is what bkt does anyway.
    const none = await build(['--provenance=false', '--sbom=false', '-o', 'type=cacheonly'], context);
    expect(none.stderr).not.toMatch(/^error/m);
    expect(none.code).toBe(0);
  });
});

describe('--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]', () => {
  let layout: string;
  let manifestDigest: string;

  beforeAll(async () => {
    // A layout on disk, written by bkt's oci exporter from the registry busybox plus a RUN step.
    const base = await contextWith('layout-base', [`FROM ${busybox.reference}`, 'RUN echo "from the layout" > /from-layout.txt']);
    layout = join(work, 'layout');
    const meta = join(work, 'layout.json');
    const r = await build(['-o', `type=oci,dest=${layout},tar=false,name=base:v1`, '--metadata-file', meta], base);
    expect(r.code).toBe(0);
    manifestDigest = (await readMetadata(meta))['containerimage.digest']!;
  });

  const consumer = () =>
    contextWith('layout-consumer', ['FROM base', 'RUN cat /from-layout.txt > /copied.txt && echo "ran on the layout image" >> /copied.txt']);

  for (const [what, ref] of [
    ['a relative PATH:TAG', () => 'oci-layout://./layout:v1'],
    ['an absolute PATH with its only image (no tag)', () => `oci-layout://${layout}`],
    ['PATH@DIGEST', () => `oci-layout://${layout}@${manifestDigest}`],
  ] as const) {
    it(`builds FROM the layout's image given as ${what}`, async () => {
      const out = join(work, `out-${Math.random().toString(36).slice(2)}`);
      const r = await build(['--build-context', `base=${ref()}`, '-o', `type=local,dest=${out}`], await consumer());
      expect(r.stderr).not.toMatch(/^error/m);
      expect(r.code).toBe(0);
      expect(await readFile(join(out, 'copied.txt'), 'utf8')).toBe('from the layout\nran on the layout image\n');
      expect(await readdir(out)).toContain('bin');
    });
  }

  it('refuses a PATH that is no layout, and a malformed digest, naming the flag', async () => {
    const context = await consumer();
    const notLayout = await build(['--build-context', 'base=oci-layout://./layout-base:v1', '-o', 'type=cacheonly'], context);
    expect(notLayout.stderr).toMatch(/^error: --build-context base=oci-layout:\/\/.\/layout-base:v1: .*layout-base\/index.json does not exist: is it an OCI image layout\?$/m);
    expect(notLayout.code).toBe(1);
    const badDigest = await build(['--build-context', 'base=oci-layout://./layout@sha256:abc', '-o', 'type=cacheonly'], context);
    expect(badDigest.stderr).toMatch(/^error: --build-context base=oci-layout:\/\/.\/layout@sha256:abc: "sha256:abc" is not a sha256 digest$/m);
    expect(badDigest.code).toBe(1);
  });
});
