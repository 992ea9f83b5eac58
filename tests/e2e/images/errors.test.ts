/**
 * Issue 4 acceptance through the built CLI: the image source's errors are
 * clear (exit code 1, a message naming the reference or the platform) — an
 * unknown image, a malformed reference, an index with no manifest for the
 * host's platform. (Layers that try to write outside the snapshot:
 * tests/e2e/security/layer-escapes.test.ts.)
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryServer } from '@bkt/testkit';
import { definition, removeDir, sourceOp, tempDir } from '../helpers.js';
import { bktEnv, buildImageOnly, HOST_ARCH, pushCraftedImage, pushIndex } from './lib.js';

let registry: RegistryServer;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  work = await tempDir('images-errors');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

/** Builds `image(ref)` in a fresh project and store under `work`; with `out`, exports the tree there. */
const buildFrom = (ref: string, out?: string) => buildImageOnly(work, ref, out);

/** The final error line of a failed build. */
const errorOf = (stderr: string) => stderr.split('\n').filter((l) => /^error\b/i.test(l)).join('\n') || stderr;

describe('clear errors through the CLI', () => {
  it('an unknown image names the reference', async () => {
    const ref = `${registry.host}/e2e/does-not-exist:v1`;
    const r = await buildFrom(ref);
    expect(r.code).toBe(1);
    expect(errorOf(r.stderr)).toContain(`${registry.host}/e2e/does-not-exist:v1`);
    expect(errorOf(r.stderr)).toMatch(/not found/i);
  });

  it('a malformed reference in a config names it', async () => {
    const r = await buildFrom(`${registry.host}/Upper/Case::tag`);
    expect(r.code).toBe(1);
    expect(errorOf(r.stderr)).toContain('Upper/Case::tag');
  });

  it('a malformed reference in a marshalled definition (--llb -) names it', async () => {
    const bad = sourceOp(`docker-image://${registry.host}/e2e/app:bad tag`);
    const r = await bktEnv(['build', '--root', join(work, 'llb-store'), '--llb', '-'], { cwd: work, input: definition([bad], bad) });
    expect(r.code).toBe(1);
    expect(errorOf(r.stderr)).toContain('e2e/app:bad tag');
  });

  it('an index with no manifest for the platform names the platform and the ones it has', async () => {
    const other = HOST_ARCH === 's390x' ? 'ppc64le' : 's390x';
    const desc = await pushCraftedImage(registry.host, 'e2e/foreign', 'unused', [[{ name: 'hello', type: 'file', body: 'hi\n' }]], {
      architecture: other,
      pushTag: false,
    });
    await pushIndex(registry.host, 'e2e/foreign', 'v1', [{ desc, architecture: other }]);
    const r = await buildFrom(`${registry.host}/e2e/foreign:v1`);
    expect(r.code).toBe(1);
    const msg = errorOf(r.stderr);
    expect(msg).toContain(`linux/${HOST_ARCH}`);
    expect(msg).toContain(`linux/${other}`);
    expect(msg).toContain('e2e/foreign');
  });
});
