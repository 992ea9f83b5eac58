import cacheBackends from '@bkt/cache-registry';
import { definePreset, type BktPreset } from '@bkt/core';
import localExporters from '@bkt/exporter-local';
import ociExporters from '@bkt/exporter-oci';
import dockerfile from '@bkt/frontend-dockerfile';
import frontendGateway from '@bkt/frontend-gateway';
import type { RegistrySettings } from '@bkt/registry';
import { builtinOpsPlugin } from '@bkt/solver';
import gitSource from '@bkt/source-git';
import httpSource from '@bkt/source-http';
import imageSource from '@bkt/source-image';
import localSource from '@bkt/source-local';
import runcWorker, { type RuncWorkerOptions } from '@bkt/worker-runc';

/**
 * The built-in backends of bktd, as the bkt CLI's default preset (the
 * sources, exporters, the solver's file/merge/diff ops, exec in runc, the
 * Dockerfile frontend, the cache backends), with the daemon config's registry and worker settings.
 */
export function daemonPreset(opts: { registry?: RegistrySettings; worker?: RuncWorkerOptions } = {}): BktPreset {
  return definePreset({
    name: '@bkt/server/default',
    plugins: () => [
      localSource(),
      imageSource({ registry: opts.registry }),
      httpSource(),
      gitSource(),
      localExporters(),
      ociExporters({ registry: opts.registry }),
      builtinOpsPlugin(),
      runcWorker(opts.worker),
      dockerfile(),
      frontendGateway(),
      cacheBackends({ registry: opts.registry }),
    ],
  });
}
