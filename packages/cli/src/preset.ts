import { definePreset, type BktPreset } from '@bkt/core';
import localExporters from '@bkt/exporter-local';
import { builtinOpsPlugin } from '@bkt/solver';
import gitSource from '@bkt/source-git';
import httpSource from '@bkt/source-http';
import imageSource from '@bkt/source-image';
import localSource from '@bkt/source-local';
import runcWorker from '@bkt/worker-runc';
import { lazyCacheBackends, lazyDockerfile, lazyFrontendGateway, lazyOciExporters } from './lazy-plugins.js';

/** Options of the default preset (none yet: per-build values travel in the solve request's client, never here). */
export type DefaultPresetOptions = Record<string, never>;

/**
 * The built-in backends every build starts with (unless a config sets
 * `defaultPreset: false`): the `local`, `docker-image`, `oci-layout`,
 * `https`/`http` and `git` sources, the `local`, `tar`, `image`, `oci` and `docker` exporters, the
 * solver's file, merge and diff ops, exec in runc, the Dockerfile frontend, the gateway frontend
 * (`gateway.v0`: frontend images), and the `registry`, `local` and `inline` cache backends. A config plugin with
 * the same name replaces one of these (to pass it options). The image exporters, the two
 * frontends and the cache backends are imported when a build first uses them (lazy-plugins.ts).
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
      lazyOciExporters(),
      builtinOpsPlugin(),
      runcWorker(),
      lazyDockerfile(),
      lazyFrontendGateway(),
      lazyCacheBackends(),
    ],
  });
}
