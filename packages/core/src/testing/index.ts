/**
 * `@bkt/core/testing`: conformance suites every backend of a kind runs, as
 * vitest `describe` blocks. Import from a backend's own test file:
 *
 * ```ts
 * import { describeSnapshotterConformance } from '@bkt/core/testing';
 * describeSnapshotterConformance('overlay', async () => ({ snapshotter, cleanup }));
 * ```
 */
export { describeSnapshotterConformance, type SnapshotterFixture } from './snapshotter.js';
export { describeExporterConformance, type ExporterFixture } from './exporter.js';
export { describeSourceConformance, type SourceFixture, type SourceCase } from './source.js';
export { testBuildContext, memoryRecords, type TestContextOptions } from './context.js';
