import type { ImageConfigResolver, ImageResolveMode, Source } from './types.js';

/** The resolve modes `ImageConfigResolver.resolveImageConfig` accepts. */
export const IMAGE_RESOLVE_MODES: readonly ImageResolveMode[] = ['default', 'pull', 'local'];

/**
 * Whether a registered source declares the `ImageConfigResolver` capability.
 * A source declares it by implementing the interface
 * (`class ImageSource implements Source, ImageConfigResolver`).
 */
export function isImageConfigResolver(source: Source | undefined): source is Source & ImageConfigResolver {
  return typeof (source as Partial<ImageConfigResolver> | undefined)?.resolveImageConfig === 'function';
}
