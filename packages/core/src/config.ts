import type { BktPlugin } from './plugin.js';
import type { Attrs } from './types.js';

/** A plugin given in a config: an imported object, a package name, or `[package, options]`. */
export type PluginSpec = BktPlugin | string | [string, unknown?];

/** An output of a target, as `--output type=…,k=v` gives it. */
export interface OutputSpec {
  type: string;
  [attr: string]: string;
}

/** Anything that marshals to an LLB definition: an `@bkt/llb` State, or a `pb.Definition` already built. */
export interface LLBProducer {
  marshal(): unknown;
}

/** A named build of the project. */
export interface BuildTarget {
  /** The build graph: an LLB state, a marshalled `pb.Definition`, or a function returning either. */
  build: LLBProducer | Uint8Array | (() => LLBProducer | Uint8Array | Promise<LLBProducer | Uint8Array>);
  /** Directories available to `local(name)` sources, relative to the project dir. Default `{ context: '.' }`. */
  localDirs?: Record<string, string>;
  /** Default outputs when the command line gives none. */
  outputs?: OutputSpec[];
  /** Frontend attrs (when a frontend builds this target). */
  frontendAttrs?: Attrs;
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
