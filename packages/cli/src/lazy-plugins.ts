/**
 * Plugins of the default preset imported on first use. A plugin whose
 * backends are asynchronous at the registry's edge (a frontend's `solve`, an
 * exporter's `resolve`) is registered under its real name and keys, and its
 * module is imported when a build first calls one of them: a build that
 * parses no Dockerfile, runs no gateway frontend (grpc-js), exports no
 * image and imports or exports no cache never loads those packages.
 *
 * The loaded plugin must be the declared one: the same name, exactly the
 * declared frontends or exporters and no other backends (checked when it
 * loads; `lazy-plugins.test.ts` checks the declarations against the real
 * plugins). Its `setup` runs when it loads, with the context the lazy
 * plugin's own setup received, so its hook taps (exporter-oci's `shutdown`)
 * are on the build's hooks.
 */
import { BktError, type Attrs, type BktPlugin, type BuildContext, type CacheBackend, type Exporter, type Frontend, type FrontendBridge, type PluginContext } from '@bkt/core';

/** What a lazy plugin declares: its name and backend keys. */
export interface LazyPluginDeclaration {
  name: string;
  frontends?: readonly string[];
  exporters?: readonly string[];
  /** Cache backend types; each has both an exporter and an importer. */
  cacheBackends?: readonly string[];
}

/** A plugin registering `decl`'s frontends and exporters, `load()`ed on first use. */
export function lazyPlugin(decl: LazyPluginDeclaration, load: () => Promise<BktPlugin>): BktPlugin {
  let context: PluginContext | undefined;
  let loaded: Promise<BktPlugin> | undefined;
  const real = () =>
    (loaded ??= (async () => {
      const plugin = await load();
      checkDeclaration(decl, plugin);
      if (plugin.setup) {
        if (!context) throw new BktError('PLUGIN', `${decl.name}: used before its setup ran`);
        await plugin.setup(context);
      }
      return plugin;
    })());
  const frontend = async (name: string): Promise<Frontend> => (await real()).frontends!.find((f) => f.name === name)!;
  const exporter = async (type: string): Promise<Exporter> => (await real()).exporters!.find((e) => e.type === type)!;
  const cacheBackend = async (type: string): Promise<CacheBackend> => (await real()).cacheBackends!.find((b) => b.type === type)!;
  return {
    name: decl.name,
    ...(decl.frontends && {
      frontends: decl.frontends.map((name) => ({
        name,
        solve: async (attrs: Attrs, bridge: FrontendBridge, ctx: BuildContext) => (await frontend(name)).solve(attrs, bridge, ctx),
      })),
    }),
    ...(decl.exporters && {
      exporters: decl.exporters.map((type) => ({ type, resolve: async (attrs: Attrs) => (await exporter(type)).resolve(attrs) })),
    }),
    ...(decl.cacheBackends && {
      cacheBackends: decl.cacheBackends.map((type) => ({
        type,
        exporter: async (attrs: Attrs) => (await cacheBackend(type)).exporter!(attrs),
        importer: async (attrs: Attrs) => (await cacheBackend(type)).importer!(attrs),
      })),
    }),
    setup(ctx) {
      context = ctx;
    },
  };
}

/** Throws a `PLUGIN` error when `plugin` is not what `decl` declared. */
export function checkDeclaration(decl: LazyPluginDeclaration, plugin: BktPlugin): void {
  const same = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
    JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());
  const ok =
    plugin.name === decl.name &&
    same(decl.frontends, plugin.frontends?.map((f) => f.name)) &&
    same(decl.exporters, plugin.exporters?.map((e) => e.type)) &&
    !plugin.sources?.length &&
    !plugin.opExecutors?.length &&
    same(decl.cacheBackends, plugin.cacheBackends?.map((b) => b.type)) &&
    (plugin.cacheBackends ?? []).every((b) => typeof b.exporter === 'function' && typeof b.importer === 'function') &&
    !plugin.attestationProducers?.length;
  if (!ok) {
    throw new BktError('PLUGIN', `${decl.name}: the plugin loaded on first use is not the one declared (${JSON.stringify(decl)})`, { plugin: decl.name });
  }
}

/** `@bkt/exporter-oci`'s exporters, imported when a build first resolves one. */
export const ociExportersDeclaration: LazyPluginDeclaration = { name: '@bkt/exporter-oci', exporters: ['image', 'oci', 'docker'] };
/** `@bkt/frontend-dockerfile`, imported when a build first asks for `dockerfile.v0`. */
export const dockerfileDeclaration: LazyPluginDeclaration = { name: '@bkt/frontend-dockerfile', frontends: ['dockerfile.v0'] };
/** `@bkt/frontend-gateway` (and grpc-js), imported when a build first asks for `gateway.v0`. */
export const gatewayDeclaration: LazyPluginDeclaration = { name: '@bkt/frontend-gateway', frontends: ['gateway.v0'] };

/** `@bkt/cache-registry`'s cache backends, imported when a build first imports or exports a cache. */
export const cacheBackendsDeclaration: LazyPluginDeclaration = { name: '@bkt/cache-registry', cacheBackends: ['registry', 'local', 'inline'] };

export const lazyCacheBackends = () => lazyPlugin(cacheBackendsDeclaration, async () => (await import('@bkt/cache-registry')).default());
export const lazyOciExporters = () => lazyPlugin(ociExportersDeclaration, async () => (await import('@bkt/exporter-oci')).default());
export const lazyDockerfile = () => lazyPlugin(dockerfileDeclaration, async () => (await import('@bkt/frontend-dockerfile')).default());
export const lazyFrontendGateway = () => lazyPlugin(gatewayDeclaration, async () => (await import('@bkt/frontend-gateway')).default());
