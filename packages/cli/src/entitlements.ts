/**
 * `--allow`: the entitlements a build is granted, as buildctl's and buildx's
 * `--allow` (any build: a Dockerfile, a config target, `--llb`).
 */
import { BktError } from '@bkt/core';

/** The entitlements `--allow` grants. */
export const ENTITLEMENTS = ['network.host', 'security.insecure'] as const;

/** The entitlements of `--allow` values (repeatable, comma-separated); an unknown one is an error naming it. */
export function parseEntitlements(allow: readonly string[]): string[] {
  const entitlements = [...new Set(allow.flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean))];
  for (const e of entitlements) {
    if (!(ENTITLEMENTS as readonly string[]).includes(e)) {
      throw new BktError('INVALID_ARGUMENT', `--allow ${e}: unknown entitlement (${ENTITLEMENTS.join(', ')})`, { attribute: 'allow' });
    }
  }
  return entitlements;
}
