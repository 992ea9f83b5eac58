/**
 * `bkt build --platform`: one platform. Several — a comma list, or the flag
 * given again — would build an image index (buildx's multi-platform build),
 * which bkt does not do yet: an error naming the flag, before anything runs.
 */
import { BktError } from '@bkt/core';

/** commander's parser of `--platform` (`previous` is the value of an earlier `--platform`). */
export function onePlatform(value: string, previous: string | undefined): string {
  const given = previous === undefined ? value : `${previous},${value}`;
  if (given.split(',').filter((p) => p.trim() !== '').length > 1) {
    throw new BktError(
      'UNIMPLEMENTED',
      `--platform ${given}: several platforms in one build are not supported yet; build each platform separately, one --platform per build`,
      { attribute: 'platform' },
    );
  }
  return value;
}
