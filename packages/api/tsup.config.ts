import { defineConfig } from 'tsup';

/** One entry per namespace, so each is also importable as `@bkt/api/<namespace>`. */
const namespaces = ['pb', 'control', 'gateway', 'controller', 'imagebuilder', 'contentservice', 'google', 'fsutil', 'types', 'apicaps', 'sourcepolicy', 'filesync', 'secrets', 'sshforward', 'health'];

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
  // The generated codecs use only BinaryReader and BinaryWriter of `@bufbuild/protobuf/wire`, whose index also
  // loads its text format and reflection (~15 ms of a client's start): bundled, only what they use is kept.
  noExternal: [/^@bufbuild\/protobuf(\/|$)/],
});
