import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ociLayoutContext } from './oci-layout-context.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;

describe('--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]', () => {
  let dir: string;
  const tagged = (digest: string, tag?: string) => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest,
    size: 1,
    ...(tag ? { annotations: { 'org.opencontainers.image.ref.name': tag } } : {}),
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-layout-ctx-'));
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [tagged(A, 'v1'), tagged(B, 'latest')] }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is none of its business when the value is not oci-layout://', async () => {
    expect(await ociLayoutContext('base=docker-image://alpine', dir)).toBeUndefined();
    expect(await ociLayoutContext('base=./dir', dir)).toBeUndefined();
  });

  it('resolves TAG (default latest) in index.json; a digest is taken as given', async () => {
    const v1 = await ociLayoutContext('base=oci-layout://.:v1', dir);
    expect(v1).toMatchObject({ name: 'base', dir, attr: `oci-layout://${v1!.store}:v1@${A}` });
    expect(v1!.store).toMatch(/^oci-layout-[0-9a-f]{16}$/);
    expect((await ociLayoutContext(`base=oci-layout://${dir}`, '/'))!.attr).toMatch(new RegExp(`:latest@${B}$`));
    expect((await ociLayoutContext(`base=oci-layout://${dir}@${A}`, '/'))!.attr).toMatch(new RegExp(`:latest@${A}$`));
  });

  it('names a tag the layout lacks (listing its tags), a path that is no layout, and a bad digest', async () => {
    await expect(ociLayoutContext('base=oci-layout://.:v9', dir)).rejects.toThrow(
      new RegExp(`^--build-context base=oci-layout://.:v9: the layout ${dir} has no image tagged "v9" \\(tags: v1, latest\\)$`),
    );
    await expect(ociLayoutContext('base=oci-layout://./nowhere', dir)).rejects.toThrow(/nowhere\/index.json does not exist: is it an OCI image layout\?/);
    await expect(ociLayoutContext('base=oci-layout://.@sha256:zz', dir)).rejects.toThrow(/"sha256:zz" is not a sha256 digest/);
    await expect(ociLayoutContext('base=oci-layout://', dir)).rejects.toThrow(/the layout path is empty/);
  });
});
