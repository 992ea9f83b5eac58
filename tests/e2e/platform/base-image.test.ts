/**
 * Issue 10: a base image of another platform than the build's target is an
 * error naming the image and both platforms, and nothing is built, pushed or
 * exported — unless the build accepts it (`--build-arg
 * BKT_ALLOW_PLATFORM_MISMATCH=true`), then BuildKit's InvalidBaseImagePlatform
 * warning; an image index without the target platform is always an error;
 * `--platform a,b` is an error naming the flag. Through the CLI against a
 * real registry and real runc; the base is the host's busybox, pushed as a
 * single-platform image and as an index listing only the host's platform.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { pushIndex } from '../images/lib.js';
import { HOST_ARCH, buildDockerfile, registryConfig } from './lib.js';

let registry: RegistryServer;
let work: string;
let single: PushedImage;
let indexRef: string;
/** A platform of another architecture than the host's busybox. */
const TARGET = HOST_ARCH === 'arm64' ? 'linux/amd64' : 'linux/arm64';
const HOST = `linux/${HOST_ARCH}`;
// The step would print ran-42; its command line does not hold that text.
const RUN_STEP = 'RUN echo ran-$((40+2))';

beforeAll(async () => {
  registry = await startRegistry();
  work = await tempDir('platform-base');
  single = await pushBusyboxImage(registry, 'e2e/host-only', 'latest');
  await pushIndex(registry.host, 'e2e/host-only', 'index', [{ desc: single.manifest, architecture: HOST_ARCH }]);
  indexRef = `${registry.host}/e2e/host-only:index`;
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

async function project(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

function errorLines(stderr: string): string {
  return stderr.split('\n').filter((l) => l.startsWith('error: ')).join('\n');
}

describe(`a single-platform ${HOST} base image built for ${TARGET}`, () => {
  it('is an error at its FROM line naming the image and both platforms; nothing runs, nothing is pushed or exported', async () => {
    const dir = await project('refused');
    const name = `${registry.host}/e2e/mislabelled:refused`;
    const dockerfile = `FROM ${single.reference}\n${RUN_STEP}\n`;
    const r = await buildDockerfile(dir, join(dir, 'store'), dockerfile, ['--platform', TARGET, '-t', name, '--push']);
    expect(r.code, r.stderr).toBe(1);
    expect(errorLines(r.stderr)).toBe(
      `error: Dockerfile:1:1: base image ${single.reference} is for platform ${HOST}, but this stage is built for ${TARGET}: ` +
        `its RUN steps would run ${HOST} code in an image labelled ${TARGET}. Use an image that has ${TARGET}, ` +
        `build for ${HOST} (--platform ${HOST} or FROM --platform=${HOST}), or accept the mismatch with --build-arg BKT_ALLOW_PLATFORM_MISMATCH=true`,
    );
    expect(r.stderr).not.toContain('ran-42');
    expect(await registryConfig(name)).toBeUndefined();
    const out = join(dir, 'out');
    const local = await buildDockerfile(dir, join(dir, 'store'), dockerfile, ['--platform', TARGET, '-o', `type=local,dest=${out}`]);
    expect(local.code).toBe(1);
    expect(await readdir(out).catch(() => 'absent')).toBe('absent');
  });

  it('accepted with --build-arg BKT_ALLOW_PLATFORM_MISMATCH=true: built with BuildKit\'s InvalidBaseImagePlatform warning, labelled as asked', async () => {
    const dir = await project('accepted');
    const name = `${registry.host}/e2e/mislabelled:accepted`;
    const r = await buildDockerfile(dir, join(dir, 'store'), `FROM ${single.reference}\n${RUN_STEP}\n`, [
      '--platform', TARGET, '--build-arg', 'BKT_ALLOW_PLATFORM_MISMATCH=true', '-t', name, '--push',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `InvalidBaseImagePlatform: Base image ${single.reference} was pulled with platform "${HOST}", expected "${TARGET}" for current build`,
    );
    expect(await registryConfig(name)).toMatchObject({ architecture: TARGET.split('/')[1] });
  });

  it('a stage that asks for the image\'s platform (FROM --platform) builds, without the warning', async () => {
    const dir = await project('from-platform');
    const out = join(dir, 'out');
    const r = await buildDockerfile(dir, join(dir, 'store'), `FROM --platform=${HOST} ${single.reference}\n${RUN_STEP} > /ran\n`, [
      '--platform', TARGET, '-o', `type=local,dest=${out}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('InvalidBaseImagePlatform');
    expect(existsSync(join(out, 'ran'))).toBe(true);
  });
});

describe(`an image index without ${TARGET}`, () => {
  it('is an error naming the image, the target platform and those the index has, even when a mismatch is accepted', async () => {
    const dir = await project('index');
    for (const extra of [[], ['--build-arg', 'BKT_ALLOW_PLATFORM_MISMATCH=true']]) {
      const name = `${registry.host}/e2e/from-index:latest`;
      const r = await buildDockerfile(dir, join(dir, 'store'), `FROM ${indexRef}\n${RUN_STEP}\n`, ['--platform', TARGET, ...extra, '-t', name, '--push']);
      expect(r.code, r.stderr).toBe(1);
      const error = errorLines(r.stderr);
      expect(error).toContain('Dockerfile:1:');
      expect(error).toContain(`${indexRef} has no image for platform ${TARGET} (available: ${HOST})`);
      expect(r.stderr).not.toContain('ran-42');
      expect(await registryConfig(name)).toBeUndefined();
    }
  });
});

describe('several platforms in one build', () => {
  it('--platform a,b and --platform a --platform b are an error naming the flag; no store is opened', async () => {
    const dir = await project('several');
    const root = join(dir, 'store');
    for (const flags of [['--platform', `${HOST},${TARGET}`], ['--platform', HOST, '--platform', TARGET]]) {
      const r = await buildDockerfile(dir, root, `FROM ${single.reference}\n${RUN_STEP}\n`, flags);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `error: --platform ${HOST},${TARGET}: several platforms in one build are not supported yet; build each platform separately, one --platform per build\n`,
      );
    }
    expect(existsSync(root)).toBe(false);
  });
});
