import type { BktPlugin } from './plugin.js';
import type { TargetOutput } from './target-output.js';
import type { Attrs, ImageMetaResolver, Platform } from './types.js';

/** A plugin given in a config: an imported object, a package name, or `[package, options]`. */
export type PluginSpec = BktPlugin | string | [string, unknown?];

/**
 * An exporter request as `--output type=…,k=v` gives it: the exporter type
 * and its string attributes. A target's typed `outputs` become these
 * through `outputSpecOf`.
 */
export interface OutputSpec {
  type: string;
  [attr: string]: string;
}

/** Anything that marshals to an LLB definition: an `@bkt/llb` State, or a `pb.Definition` already built. */
export interface LLBProducer {
  marshal(): unknown;
}

/** What a target's `build` function is given. */
export interface TargetBuildArgs {
  /** The platform being built: `--platform`, else this machine's. Ops that name none are marshalled for it. */
  platform: Platform;
  /**
   * Resolves image configs through the build (Go's `llb.ImageMetaResolver`;
   * a platform left out is `platform`): `await image(ref, { metaResolver })`
   * of `@bkt/llb` pins the image, takes its env, working dir and user for
   * later `run()`s, and the target's image config starts from its config.
   */
  metaResolver: ImageMetaResolver;
}

/** Docker's `HEALTHCHECK`. Durations are Go durations: `30s`, `1m30s`, `500ms`. */
export interface TargetHealthcheck {
  /** `['CMD', 'prog', 'arg']`, `['CMD-SHELL', 'command line']`, or `['NONE']` (turns off the base image's). */
  test: string[];
  interval?: string;
  timeout?: string;
  startPeriod?: string;
  startInterval?: string;
  retries?: number;
}

/**
 * The config of the image a target exports (what a Dockerfile's ENTRYPOINT,
 * CMD, ENV, USER, WORKDIR, EXPOSE, LABEL, HEALTHCHECK and STOPSIGNAL set),
 * over the config of the image its state came from (`image(ref, {
 * metaResolver })`), else over the default config.
 */
export interface TargetImageConfig {
  /** Setting it clears a `cmd` inherited from the base image, as a Dockerfile's ENTRYPOINT does. */
  entrypoint?: string[];
  cmd?: string[];
  /** Variables set over the base image's: a key it has keeps its place, a new one is added at the end. */
  env?: Record<string, string>;
  user?: string;
  /** An absolute path, or one relative to the base image's working dir. */
  workdir?: string;
  /** `'8080/tcp'`, `'53/udp'`, or a port number (tcp); added to the base image's. */
  exposedPorts?: (string | number)[];
  /** Added to (or replacing) the base image's labels. */
  labels?: Record<string, string>;
  healthcheck?: TargetHealthcheck;
  stopSignal?: string;
}

/** A named build of the project. */
export interface BuildTarget {
  /** The build graph: an LLB state, a marshalled `pb.Definition`, or a function returning either (given `TargetBuildArgs`). */
  build:
    | LLBProducer
    | Uint8Array
    | ((args: TargetBuildArgs) => LLBProducer | Uint8Array | Promise<LLBProducer | Uint8Array>);
  /** Directories available to `local(name)` sources, relative to the project dir. Default `{ context: '.' }`. */
  localDirs?: Record<string, string>;
  /** Default outputs when the command line gives no `-o`; a relative `dest` is relative to the project dir. */
  outputs?: TargetOutput[];
  /** The config of the image this target exports (image, registry, oci and docker outputs). */
  image?: TargetImageConfig;
  /** Frontend attrs (when a frontend builds this target). */
  frontendAttrs?: Attrs;
  /** One line saying what the target is, shown by `bkt build --list`. */
  description?: string;
}

export interface BktConfig {
  /** Plugins added after the default preset (a later plugin may not reuse a key). */
  plugins?: PluginSpec[];
  /** Set false to start from no built-in backends at all. Default true. */
  defaultPreset?: boolean;
  /** Store root (`--root` overrides). */
  root?: string;
  /** Targets by name; `bkt build` with no name builds `default`. */
  targets?: Record<string, BuildTarget>;
}

/** Identity function that types a config. */
export function defineConfig(config: BktConfig): BktConfig {
  return config;
}
