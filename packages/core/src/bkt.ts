import { createHooks, type BktHooks } from './hooks.js';
import type { BktPlugin } from './plugin.js';
import { createRegistries, type Registries } from './registry.js';

/** A configured bkt: its hooks and registries, filled by plugins. */
export interface Bkt {
  readonly hooks: BktHooks;
  readonly registries: Registries;
  readonly plugins: readonly BktPlugin[];
  /** Runs the `shutdown` hook. */
  close(): Promise<void>;
}

/**
 * Registers every plugin's backends, in order, then runs each `setup()`.
 * A duplicate registry key fails here, naming both plugins.
 */
export async function createBkt(plugins: BktPlugin[], opts: { projectDir?: string } = {}): Promise<Bkt> {
  const hooks = createHooks();
  const registries = createRegistries();
  for (const plugin of plugins) {
    for (const source of plugin.sources ?? []) {
      for (const scheme of source.schemes) registries.sources.register(scheme, source, plugin.name);
    }
    for (const ex of plugin.opExecutors ?? []) registries.opExecutors.register(ex.kind, ex, plugin.name);
    for (const ex of plugin.exporters ?? []) registries.exporters.register(ex.type, ex, plugin.name);
    for (const cb of plugin.cacheBackends ?? []) registries.cacheBackends.register(cb.type, cb, plugin.name);
    for (const fe of plugin.frontends ?? []) registries.frontends.register(fe.name, fe, plugin.name);
    for (const ap of plugin.attestationProducers ?? []) registries.attestationProducers.register(ap.kind, ap, plugin.name);
  }
  for (const plugin of plugins) {
    await plugin.setup?.({ hooks, registries, projectDir: opts.projectDir ?? process.cwd() });
  }
  return Object.freeze({
    hooks,
    registries,
    plugins: Object.freeze([...plugins]),
    close: () => hooks.shutdown.promise(),
  });
}
