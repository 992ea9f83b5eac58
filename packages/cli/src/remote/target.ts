/**
 * A config target built through bktd: the CLI evaluates the target's graph
 * here and solves its definition there (Control.Solve takes definitions).
 * What a target needs of a build function — image config lookups
 * (`image(ref, { metaResolver })`), an image config for the result (`image`
 * settings, a base image's config, `--platform`) — needs BuildKit's gateway
 * API, which bktd does not serve: each is an error saying so.
 */
import { BktError, type BuildTarget, type ImageMetaResolver, type OutputSpec, type Platform } from '@bkt/core';
import { hostPlatform } from '@bkt/oci';
import { evaluateTarget } from '../target-build.js';
import { targetImageConfig } from '../target-image.js';

const IMAGE_OUTPUTS = new Set(['image', 'oci', 'docker']);

/** The marshalled definition of target `name` for a solve through the daemon at `address`. */
export async function daemonTargetDefinition(
  name: string,
  target: BuildTarget,
  platform: Platform | undefined,
  outputs: readonly OutputSpec[],
  address: string,
): Promise<Uint8Array> {
  const metaResolver: ImageMetaResolver = {
    resolveImageConfig: async (ref) => {
      throw new BktError(
        'UNIMPLEMENTED',
        `target "${name}": image(${ref}, { metaResolver }) resolves image configs through the build (BuildKit's gateway API), which bktd at ${address} does not serve; build this target without --addr`,
        { attribute: 'build' },
      );
    },
  };
  const evaluated = await evaluateTarget(target, name, { platform: platform ?? hostPlatform(), metaResolver }, platform);
  const config = targetImageConfig({ base: evaluated.baseImageConfig, spec: target.image, platform, where: `target "${name}"` });
  const image = outputs.find((o) => IMAGE_OUTPUTS.has(o.type));
  if (config && image) {
    const what = target.image !== undefined ? 'its image settings' : platform ? `--platform ${platform.os}/${platform.architecture}` : "its base image's config";
    throw new BktError(
      'UNIMPLEMENTED',
      `target "${name}": the ${image.type} output would need the image config the target makes (${what}), which a daemon (--addr) takes only through BuildKit's gateway API, not served by bktd; build this target without --addr`,
      { attribute: 'image' },
    );
  }
  return evaluated.definition;
}
