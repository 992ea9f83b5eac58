import type { BktPlugin } from '@bkt/core';
import { dockerfileFrontend } from './frontend.js';

export * from './parser/index.js';
export { convertDockerfile } from './convert/convert.js';
export type { ConvertOptions, ConvertResult, ImageConfigResolver, ResolveMode } from './convert/convert.js';
export { parseFrontendAttrs } from './convert/attrs.js';
export type { FrontendOptions } from './convert/attrs.js';
export { parseGitRef } from './convert/git.js';
export type { GitRef } from './convert/git.js';
export { emptyImage, serializeImage, parseImageConfig } from './convert/image.js';
export type { DockerImage } from './convert/image.js';
export { dockerfileFrontend, withDockerfileLocation, IMAGE_CONFIG_KEY } from './frontend.js';
export type { DockerfileFrontend } from './frontend.js';

/** The plugin: registers the `dockerfile.v0` frontend. */
export default function dockerfile(): BktPlugin {
  return { name: '@bkt/frontend-dockerfile', frontends: [dockerfileFrontend()] };
}
