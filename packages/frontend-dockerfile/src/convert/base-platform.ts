/**
 * A base image against the platform its stage is built for. An image whose
 * config declares another OS or architecture (a single-platform image
 * resolved for a platform it does not have) would have the stage's RUN steps
 * run its code while the result is labelled with the stage's platform: that
 * is an error naming the image and both platforms, unless the build accepts
 * the mismatch with the build arg `BKT_ALLOW_PLATFORM_MISMATCH=true`; then
 * it is BuildKit's `InvalidBaseImagePlatform` build-check warning.
 */
import { BktError, type Platform } from '@bkt/core';
import { formatPlatform, normalizePlatform } from '@bkt/oci';
import { RULES } from '../parser/rules.js';
import type { SourceRange } from '../parser/errors.js';
import { type DockerImage, imagePlatform } from './image.js';
import type { ConvertContext } from './state.js';

/** The build arg that accepts a base image of another platform (with a warning). */
export const ALLOW_PLATFORM_MISMATCH_ARG = 'BKT_ALLOW_PLATFORM_MISMATCH';

/** The value of `build-arg:BKT_ALLOW_PLATFORM_MISMATCH`: `true`/`1` or `false`/`0`/empty; anything else is an error naming it. */
export function parseAllowPlatformMismatch(value: string | undefined): boolean {
  const v = (value ?? '').trim().toLowerCase();
  if (v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new BktError('INVALID_ARGUMENT', `build-arg:${ALLOW_PLATFORM_MISMATCH_ARG}: expected true or false, got ${JSON.stringify(value)}`, {
    attribute: `build-arg:${ALLOW_PLATFORM_MISMATCH_ARG}`,
  });
}

/**
 * Checks `img`, the config of base image `name`, against `expected` (OS and
 * architecture, as BuildKit compares them). A mismatch reports the warning
 * when accepted, else returns the error's text for the caller to place at
 * the FROM line. Undefined: nothing to refuse.
 */
export function checkBasePlatform(ctx: ConvertContext, name: string, img: DockerImage, expected: Platform, range: SourceRange): string | undefined {
  const declared = imagePlatform(img);
  if (!declared) return undefined;
  const actual = normalizePlatform(declared);
  const want = normalizePlatform(expected);
  if (actual.os === want.os && actual.architecture === want.architecture) return undefined;
  const a = formatPlatform(actual);
  const e = formatPlatform(want);
  if (ctx.opts.allowPlatformMismatch) {
    ctx.lint.report(RULES.InvalidBaseImagePlatform, range, `Base image ${name} was pulled with platform "${a}", expected "${e}" for current build`);
    return undefined;
  }
  return (
    `base image ${name} is for platform ${a}, but this stage is built for ${e}: its RUN steps would run ${a} code in an image labelled ${e}. ` +
    `Use an image that has ${e}, build for ${a} (--platform ${a} or FROM --platform=${a}), ` +
    `or accept the mismatch with --build-arg ${ALLOW_PLATFORM_MISMATCH_ARG}=true`
  );
}
