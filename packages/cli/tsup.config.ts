import { defineConfig, type Options } from 'tsup';
import { packageConfig } from '../../tsup.shared.js';

/**
 * Two builds. `dist/`: the library entry (`@bkt/cli`: main(), the preset, the
 * option parsers), as every package. `dist-bin/`: the `bkt` executable as one
 * bundled entry — the CLI and every `@bkt/*` package it uses, plus their pure
 * JS dependencies, in a few files, so start-up resolves and reads a few
 * modules instead of ~100; what a command does not need (the Dockerfile
 * frontend, the image exporters, grpc-js, …) stays in chunks imported on
 * first use. Not bundled: `@bkt/core` and `@bkt/llb` and the leaves they
 * import (`api`, `oci`, `fsutil`; a project config and its plugins import
 * them and must share the CLI's instances: one `BktError`, one `State`, and
 * no second copy of them loaded), native modules (better-sqlite3) and
 * packages loaded only by some commands that read files beside themselves
 * (jiti, grpc-js).
 */
/**
 * better-sqlite3 (CommonJS, the store's database) is loaded with `require`
 * (the banner's) rather than an ESM `import`: Node imports a CommonJS module
 * by first parsing its source for export names (cjs-module-lexer), which a
 * `require` skips. The store imports only its default export (`module.exports`).
 */
const requireSqlite: NonNullable<Options['esbuildPlugins']>[number] = {
  name: 'bkt-require-better-sqlite3',
  setup(build) {
    build.onResolve({ filter: /^better-sqlite3$/ }, (args) =>
      args.namespace === 'bkt-require' ? { path: args.path, external: true } : { path: args.path, namespace: 'bkt-require' },
    );
    build.onLoad({ filter: /.*/, namespace: 'bkt-require' }, (args) => ({
      contents: `export default require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/** Packages a project config imports (and the leaves they import): one instance shared with the config. */
const SHARED = [/^@bkt\/(core|llb|api|oci|fsutil)(\/|$)/];

export default [
  packageConfig({ entry: ['src/index.ts'], dts: { entry: 'src/index.ts' } }),
  defineConfig({
    entry: { bkt: 'src/bin.ts' },
    outDir: 'dist-bin',
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    sourcemap: true,
    clean: true,
    dts: false,
    splitting: true,
    // dist-bin/metafile-esm.json: which package each chunk holds (tests/e2e/repo/startup.test.ts checks what start-up loads).
    metafile: true,
    noExternal: [/^@bkt\/(?!(core|llb|api|oci|fsutil)(\/|$))/, /^(?!better-sqlite3$|jiti$|tapable$|node:)[^@./]/],
    external: [...SHARED, '@grpc/grpc-js', 'jiti', 'tapable', /^@bufbuild\//],
    // Bundled CommonJS dependencies require Node's built-ins: give the ESM bundle a require.
    esbuildPlugins: [requireSqlite],
    banner: { js: "import { createRequire as __bktCreateRequire } from 'node:module'; const require = __bktCreateRequire(import.meta.url);" },
  }),
];
