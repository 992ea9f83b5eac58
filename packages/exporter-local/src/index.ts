import type { BktPlugin } from '@bkt/core';
import { createLocalExporter, createTarExporter, type LocalExporterOptions } from './exporters.js';

export { createLocalExporter, createTarExporter, type LocalExporterOptions } from './exporters.js';
export { copyTree } from './write-dir.js';
export { writeTar } from './write-tar.js';

/** The plugin: exporters `local` (a directory) and `tar` (a file or stdout). */
export default function localExporters(opts: LocalExporterOptions = {}): BktPlugin {
  return {
    name: '@bkt/exporter-local',
    exporters: [createLocalExporter(), createTarExporter(opts)],
  };
}
