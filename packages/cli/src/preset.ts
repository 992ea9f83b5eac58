import cacheBackends from '@bkt/cache-registry';
import { definePreset, type BktPreset } from '@bkt/core';
import localExporters from '@bkt/exporter-local';
import ociExporters from '@bkt/exporter-oci';
import dockerfile from '@bkt/frontend-dockerfile';
import frontendGateway from '@bkt/frontend-gateway';
import { builtinOpsPlugin } from '@bkt/solver';
import gitSource from '@bkt/source-git';
import httpSource from '@bkt/source-http';
import imageSource from '@bkt/source-image';
import localSource from '@bkt/source-local';
import runcWorker from '@bkt/worker-runc';

/** Options of the default preset (none yet: per-build values travel in the solve request's client, never here). */
export type DefaultPresetOptions = Record<string, never>;

/**
 * The built-in backends every build starts with (unless a config sets
 * `defaultPreset: false`): the `local`, `docker-image`, `oci-layout`,
 * `https`/`http` and `git` sources, the `local`, `tar`, `image`, `oci` and `docker` exporters, the
 * solver's file, merge and diff ops, exec in runc, the Dockerfile frontend and the gateway frontend
 * (`gateway.v0`: frontend images). A config plugin with
 * the same name replaces one of these (to pass it options).
 */
export function defaultPreset(_opts: DefaultPresetOptions = {}): BktPreset {
  return definePreset({
    name: '@bkt/cli/default',
    plugins: () => [
      localSource(),
      imageSource(),
      httpSource(),
      gitSource(),
      localExporters(),
      ociExporters(),
      builtinOpsPlugin(),
      runcWorker(),
      dockerfile(),
      frontendGateway(),
      cacheBackends(),
    ],
  });
}
