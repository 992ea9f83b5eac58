import { definePreset, type BktPreset } from '@bkt/core';
import localExporters from '@bkt/exporter-local';
import { builtinOpsPlugin } from '@bkt/solver';
import localSource from '@bkt/source-local';
import runcWorker from '@bkt/worker-runc';

/**
 * The built-in backends every build starts with (unless a config sets
 * `defaultPreset: false`): the `local` source, the `local` and `tar`
 * exporters, the solver's file, merge and diff ops, and exec in runc. A config plugin with
 * the same name replaces one of these (to pass it options).
 */
export function defaultPreset(): BktPreset {
  return definePreset({
    name: '@bkt/cli/default',
    plugins: () => [localSource(), localExporters(), builtinOpsPlugin(), runcWorker()],
  });
}
