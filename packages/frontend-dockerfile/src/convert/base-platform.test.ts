import { describe, expect, test } from 'vitest';
import { isBktError } from '@bkt/core';
import { DockerfileParseError } from '../parser/errors.js';
import { parseFrontendAttrs } from './attrs.js';
import { type ConvertOptions, convertDockerfile } from './convert.js';
import { BUSYBOX_CONFIG, decodeOps, execOf, fixedImages, opNamed } from './decoded-ops.test-util.js';
import type { DockerImage } from './image.js';

const AMD64_ONLY = 'docker.io/library/amd64only:latest';
const ARM64 = { os: 'linux', architecture: 'arm64' };
const AMD64 = { os: 'linux', architecture: 'amd64' };

async function convert(text: string, opts: ConvertOptions) {
  const resolver = fixedImages({ [AMD64_ONLY]: BUSYBOX_CONFIG });
  const r = await convertDockerfile(text, { resolveImageConfig: resolver, buildPlatform: AMD64, ...opts });
  return { ...r, ops: decodeOps(r.definition), image: JSON.parse(new TextDecoder().decode(r.imageConfig)) as DockerImage };
}

describe('a base image of another platform than its stage', () => {
  test('is an error at the FROM line naming the image and both platforms', async () => {
    const err = await convert('# a comment\nFROM amd64only\nRUN uname -m\n', { targetPlatform: ARM64 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DockerfileParseError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^Dockerfile:2(:\d+)?: base image amd64only is for platform linux\/amd64, but this stage is built for linux\/arm64/);
    expect(msg).toContain('--build-arg BKT_ALLOW_PLATFORM_MISMATCH=true');
  });

  test('accepted with BKT_ALLOW_PLATFORM_MISMATCH: BuildKit\'s InvalidBaseImagePlatform warning, the image labelled as asked', async () => {
    const r = await convert('FROM amd64only\nRUN uname -m\n', { targetPlatform: ARM64, allowPlatformMismatch: true });
    expect(r.warnings.map((w) => [w.rule, w.message, w.range.startLine])).toEqual([
      ['InvalidBaseImagePlatform', 'Base image amd64only was pulled with platform "linux/amd64", expected "linux/arm64" for current build', 1],
    ]);
    expect(r.warnings[0]!.url).toBe('https://docs.docker.com/go/dockerfile/rule/invalid-base-image-platform/');
    expect(r.image.architecture).toBe('arm64');
  });

  test('the build arg reads true/1 and false/0/empty; anything else is an error naming it', () => {
    const arg = (v: string) => parseFrontendAttrs({ 'build-arg:BKT_ALLOW_PLATFORM_MISMATCH': v }).allowPlatformMismatch;
    expect([arg('true'), arg('1'), arg('false'), arg('0'), arg('')]).toEqual([true, true, undefined, undefined, undefined]);
    expect(parseFrontendAttrs({}).allowPlatformMismatch).toBeUndefined();
    let err: unknown;
    try {
      arg('yes please');
    } catch (e) {
      err = e;
    }
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe('build-arg:BKT_ALLOW_PLATFORM_MISMATCH: expected true or false, got "yes please"');
  });

  test('a stage that asks for the image\'s platform (FROM --platform) is no mismatch, whatever the target', async () => {
    const r = await convert('FROM --platform=linux/amd64 amd64only\nRUN uname -m\n', { targetPlatform: ARM64 });
    expect(r.warnings.map((w) => w.rule)).not.toContain('InvalidBaseImagePlatform');
    expect(opNamed(r.ops, 'RUN').op.platform).toMatchObject({ OS: 'linux', Architecture: 'amd64' });
  });

  test('without a target platform the stage takes the image\'s (BuildKit\'s autoDetectPlatform)', async () => {
    const resolver = fixedImages({ [AMD64_ONLY]: { ...BUSYBOX_CONFIG, architecture: 'arm64' } });
    const r = await convertDockerfile('FROM amd64only\nRUN uname -m\n', { resolveImageConfig: resolver, buildPlatform: AMD64 });
    const ops = decodeOps(r.definition);
    expect(opNamed(ops, 'RUN').op.platform).toMatchObject({ OS: 'linux', Architecture: 'arm64' });
    expect(execOf(opNamed(ops, 'RUN')).meta!.args).toEqual(['/bin/sh', '-c', 'uname -m']);
    expect(JSON.parse(new TextDecoder().decode(r.imageConfig))).toMatchObject({ architecture: 'arm64', os: 'linux' });
  });

  test('without a target platform a docker-image named context sets its stage\'s platform too', async () => {
    const resolver = fixedImages({ [AMD64_ONLY]: { ...BUSYBOX_CONFIG, architecture: 'arm64' } });
    const r = await convertDockerfile('FROM base\nRUN uname -m\n', { resolveImageConfig: resolver, buildPlatform: AMD64, contexts: { base: 'docker-image://amd64only' } });
    expect(opNamed(decodeOps(r.definition), 'RUN').op.platform).toMatchObject({ OS: 'linux', Architecture: 'arm64' });
  });

  test('a docker-image named context of another platform is refused at the FROM that uses it', async () => {
    const err = await convert('FROM busybox\nRUN true\n', { targetPlatform: ARM64, contexts: { busybox: 'docker-image://amd64only' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DockerfileParseError);
    expect((err as Error).message).toMatch(/^Dockerfile:1(:\d+)?: base image docker\.io\/library\/amd64only:latest \(context busybox\) is for platform linux\/amd64, but this stage is built for linux\/arm64/);
  });
});
