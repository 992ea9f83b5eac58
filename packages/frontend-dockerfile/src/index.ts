import type { BktPlugin } from '@bkt/core';
import { dockerfileFrontend } from './frontend.js';

// The public surface: the plugin, the parser's entry and error for tooling,
// and the converter (Dockerfile → LLB, nothing run). Everything else is internal.
export { parseDockerfile, DockerfileParseError } from './parser/index.js';
export type { Dockerfile, Stage, ParseOptions, Instruction, LintWarning } from './parser/index.js';
export { convertDockerfile } from './convert/convert.js';
export type { ConvertOptions, ConvertResult, ImageConfigResolver, ResolveMode } from './convert/convert.js';

/** The plugin: registers the `dockerfile.v0` frontend. */
export default function dockerfile(): BktPlugin {
  return { name: '@bkt/frontend-dockerfile', frontends: [dockerfileFrontend()] };
}
