import { defineConfig } from 'tsup';

/** One entry per namespace, so each is also importable as `@bkt/api/<namespace>`; and `definition`, the part of `pb` a SolveRequest carries. */
const namespaces = ['pb', 'definition', 'control', 'gateway', 'controller', 'imagebuilder', 'contentservice', 'google', 'fsutil', 'types', 'apicaps', 'sourcepolicy', 'filesync', 'secrets', 'sshforward', 'health'];

export default defineConfig({
  entry: ['src/index.ts', ...namespaces.map((name) => `src/${name}.ts`)],
  format: ['esm'],
  // Declarations come from tsc (tsconfig.build.json), one .d.ts per source file:
  // tsup's bundled dts turns `export * as pb` namespaces into value-only
  // declarations, so `pb.Op` would not be usable as a type.
  dts: false,
  onSuccess: 'tsc -p tsconfig.build.json',
  sourcemap: true,
  clean: true,
  target: 'node20',
});
