import type { BktPlugin } from '@bkt/core';
import { createLocalExporter, createTarExporter } from './exporters.js';

export { createLocalExporter, createTarExporter } from './exporters.js';

/** The plugin: exporters `local` (a client directory) and `tar` (a client file or its stdout). */
export default function localExporters(): BktPlugin {
  return {
    name: '@bkt/exporter-local',
    exporters: [createLocalExporter(), createTarExporter()],
  };
}
