import type { BktHooks } from './hooks.js';
import type { Registries } from './registry.js';
import type {
  AttestationProducer,
  CacheBackend,
  Exporter,
  Frontend,
  OpExecutor,
  Source,
} from './types.js';

/** What a plugin's `setup()` receives. */
export interface PluginContext {
  readonly hooks: BktHooks;
  readonly registries: Registries;
  /** The project directory (where the config file is). */
  readonly projectDir: string;
}

/**
 * A bkt plugin: a plain object. Backends listed in the arrays are registered
 * by key before `setup()` runs; a duplicate key is an error naming both plugins.
 */
export interface BktPlugin {
  /** The package name (`@bkt/source-git`, `bkt-plugin-s3-cache`). */
  name: string;
  sources?: Source[];
  opExecutors?: OpExecutor[];
  exporters?: Exporter[];
  cacheBackends?: CacheBackend[];
  frontends?: Frontend[];
  attestationProducers?: AttestationProducer[];
  /** Taps hooks; may register more backends through `registries`. */
  setup?(ctx: PluginContext): void | Promise<void>;
}

/** Identity function that types a plugin object. */
export function definePlugin<T extends BktPlugin>(plugin: T): T {
  return plugin;
}
