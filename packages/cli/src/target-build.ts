/**
 * How a config target is built: its `build` (an LLB state, a definition, or
 * a function given `TargetBuildArgs`) evaluated inside the solve, as
 * BuildKit's `client.Build` runs a gateway build function, so image configs
 * resolve through the build (its credentials, its progress, its
 * cancellation); the result carries the target's image config.
 */
import * as pb from '@bkt/api/pb';
import { BktError, type BuildTarget, type FrontendBridge, type ImageMetaResolver, type Platform, type TargetBuildArgs } from '@bkt/core';
import { hostPlatform } from '@bkt/oci';
import type { BuildFunction } from '@bkt/solver';
import { targetImageConfig } from './target-image.js';

/** Where the image exporters read a single-platform result's image config (BuildKit's `exptypes.ExporterImageConfigKey`). */
const IMAGE_CONFIG_KEY = 'containerimage.config';

export interface EvaluatedTarget {
  /** The marshalled `pb.Definition`. */
  definition: Uint8Array;
  /** The config of the image the target's state came from (`image(ref, { metaResolver })`). */
  baseImageConfig?: Uint8Array;
}

/**
 * The solve of target `name`: evaluates its graph (for `platform` when
 * given, else this machine's), solves it, and sets the image config the
 * target's `image` settings and base image make.
 */
export function targetBuildFunction(name: string, target: BuildTarget, platform: Platform | undefined): BuildFunction {
  return async (bridge) => {
    const evaluated = await evaluateTarget(target, name, { platform: platform ?? hostPlatform(), metaResolver: bridgeResolver(bridge, platform) }, platform);
    const result = await bridge.solve(evaluated.definition);
    const config = targetImageConfig({ base: evaluated.baseImageConfig, spec: target.image, platform, where: `target "${name}"` });
    return config ? { ...result, metadata: { ...result.metadata, [IMAGE_CONFIG_KEY]: config } } : result;
  };
}

/** The bridge's image config lookups, for `platform` unless the caller names one. */
function bridgeResolver(bridge: FrontendBridge, platform: Platform | undefined): ImageMetaResolver {
  return {
    resolveImageConfig: async (ref, opts) => {
      if (!bridge.resolveImageConfig) throw new BktError('UNIMPLEMENTED', `cannot resolve the image config of ${ref}: the solver offers no image config lookups`);
      const chosen = opts?.platform ?? platform;
      return bridge.resolveImageConfig(ref, { ...opts, ...(chosen ? { platform: chosen } : {}) });
    },
  };
}

/**
 * A target's definition and base image config. Errors of the config's own
 * code are `CONFIG` errors naming the target; a `BktError` (an image that
 * does not resolve, …) stays as it is. `marshalPlatform` is the platform of
 * ops that set none (default: this machine's).
 */
export async function evaluateTarget(target: BuildTarget, name: string, args: TargetBuildArgs, marshalPlatform?: Platform): Promise<EvaluatedTarget> {
  let built: unknown = target.build;
  let baseImageConfig: Uint8Array | undefined;
  try {
    if (typeof built === 'function') built = await (built as (a: TargetBuildArgs) => unknown)(args);
    if (isProducer(built)) {
      baseImageConfig = typeof built.getImageConfig === 'function' ? built.getImageConfig() : undefined;
      built = await built.marshal(marshalPlatform ? { platform: marshalPlatform } : undefined);
    }
  } catch (err) {
    if (err instanceof BktError) throw err;
    throw new BktError('CONFIG', `target "${name}": building its LLB failed: ${(err as Error)?.message ?? err}`, {}, { cause: err });
  }
  const definition = definitionBytes(built);
  if (!definition) {
    throw new BktError(
      'CONFIG',
      `target "${name}": "build" must be an LLB state (from @bkt/llb), a pb.Definition or its bytes, or a function returning one`,
      { attribute: 'build' },
    );
  }
  return { definition, ...(baseImageConfig ? { baseImageConfig } : {}) };
}

interface Producer {
  marshal(opts?: { platform: Platform }): unknown;
  getImageConfig?(): Uint8Array | undefined;
}

function isProducer(v: unknown): v is Producer {
  return v !== null && typeof v === 'object' && typeof (v as { marshal?: unknown }).marshal === 'function';
}

function definitionBytes(built: unknown): Uint8Array | undefined {
  if (built instanceof Uint8Array) return built;
  if (built !== null && typeof built === 'object' && Array.isArray((built as { def?: unknown }).def)) {
    return pb.Definition.encode(pb.Definition.fromPartial(built as pb.Definition)).finish();
  }
  return undefined;
}

/**
 * The marshalled `pb.Definition` of a target, outside a build: for this
 * machine's platform, with no image config lookups (a `build` that asks for
 * one fails with an error saying so).
 */
export async function marshalTarget(target: BuildTarget, name: string): Promise<Uint8Array> {
  const metaResolver: ImageMetaResolver = {
    resolveImageConfig: async (ref) => {
      throw new BktError('UNIMPLEMENTED', `target "${name}": marshalTarget resolves no image configs (asked for ${ref}); build the target with bkt build`);
    },
  };
  return (await evaluateTarget(target, name, { platform: hostPlatform(), metaResolver })).definition;
}
