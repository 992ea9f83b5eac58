import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { transformSync } from 'esbuild';
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
 * no second copy of them loaded) and packages loaded only by some commands
 * that read files beside themselves (jiti, grpc-js). better-sqlite3's
 * JavaScript is bundled (its addon is loaded by the store, by path:
 * `nativeBinding`), so it runs from the code cache with the rest; the
 * version bundled is recorded (`__BKT_BUNDLED_BETTER_SQLITE3_VERSION__`) and
 * the store uses the bundled copy only when the installed package (the
 * store's dependency, whose addon it loads) is that version, else the
 * installed package's own JavaScript (packages/store/src/metadata.ts).
 */
/**
 * `dist-bin/scripts/`: each chunk of `dist-bin/` again as a script the
 * executable runs with V8's code cache (src/code-cache.ts): imports and
 * exports as CommonJS, `import.meta.url` the chunk's own URL, `import()`
 * the loader's; and `manifest.json`, the shared ES module packages
 * (`@bkt/core`, …) each chunk's static imports reach, which the loader
 * imports before the chunk runs. The entry (`bkt.js`) stays a module only.
 */
function writeScripts(binDir: string, meta: Metafile | undefined): void {
  if (!meta) throw new Error('dist-bin: esbuild gave no metafile');
  const scriptsDir = join(binDir, 'scripts');
  mkdirSync(scriptsDir, { recursive: true });
  const shared = (output: string, seen = new Set<string>(), found = new Set<string>()): Set<string> => {
    if (seen.has(output)) return found;
    seen.add(output);
    for (const i of meta.outputs[output]?.imports ?? []) {
      if (i.kind !== 'import-statement') continue;
      if (!i.external) shared(i.path, seen, found);
      else if (SHARED.some((re) => re.test(i.path))) found.add(i.path);
    }
    return found;
  };
  const externals: Record<string, string[]> = {};
  for (const output of Object.keys(meta.outputs)) {
    const name = basename(output);
    if (!name.endsWith('.js') || name === 'bkt.js') continue;
    externals[name] = [...shared(output)];
    const code = readFileSync(join(binDir, name), 'utf8')
      .replace(BANNER, '')
      .replace(/\bimport\((["'])/g, '__bktImport($1')
      .replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
    const script = transformSync(code, {
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      define: { 'import.meta.url': '__bktImportMetaUrl' },
      supported: { 'dynamic-import': true },
      logLevel: 'error',
    }).code;
    writeFileSync(join(scriptsDir, name), script);
  }
  for (const name of readdirSync(binDir)) if (name.endsWith('.js') && name !== 'bkt.js' && !(name in externals)) throw new Error(`dist-bin/${name} is not in the metafile`);
  const program = (meta.outputs['dist-bin/bkt.js']?.imports ?? []).find((i) => i.kind === 'dynamic-import' && /\/program-[^/]*\.js$/.test(i.path));
  if (!program) throw new Error('dist-bin/bkt.js imports no program chunk');
  writeFileSync(join(scriptsDir, 'manifest.json'), JSON.stringify({ format: 1, program: basename(program.path), externals }));
}

type Metafile = {
  inputs?: Record<string, unknown>;
  outputs: Record<string, { imports?: { path: string; kind: string; external?: boolean }[] }>;
};

/**
 * The better-sqlite3 package esbuild bundles: the one the store resolves
 * (`@bkt/store` from here, then `better-sqlite3` from the store's real
 * path: esbuild's resolution of the store's import, and the store's at run
 * time).
 */
const storeRequire = createRequire(createRequire(join(process.cwd(), 'package.json')).resolve('@bkt/store/package.json'));
const SQLITE_ROOT = dirname(storeRequire.resolve('better-sqlite3/package.json'));
const SQLITE_VERSION = (
  JSON.parse(readFileSync(join(SQLITE_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

/** Fails the build unless the better-sqlite3 code in the bundle is all of `SQLITE_ROOT`, the package whose version is recorded. */
function checkBundledSqlite(meta: Metafile | undefined): void {
  if (!meta?.inputs) throw new Error('dist-bin: esbuild gave no metafile');
  const bundled = Object.keys(meta.inputs).filter((i) => /(^|\/)node_modules\/better-sqlite3\//.test(i));
  if (bundled.length === 0) throw new Error('dist-bin: better-sqlite3 is not bundled, yet its version is recorded as bundled');
  const foreign = bundled.filter((i) => !resolve(i).startsWith(SQLITE_ROOT + sep));
  if (foreign.length > 0) throw new Error(`dist-bin: bundled better-sqlite3 files not of ${SQLITE_ROOT} (version ${SQLITE_VERSION}): ${foreign.join(', ')}`);
}

/** The metafile of the last build of dist-bin (tsup writes its file after `onSuccess` runs). */
let binMetafile: Metafile | undefined;
const captureMetafile: NonNullable<Options['esbuildPlugins']>[number] = {
  name: 'bkt-capture-metafile',
  setup(build) {
    build.onEnd((result) => {
      binMetafile = result.metafile;
    });
  },
};

const BANNER = "import { createRequire as __bktCreateRequire } from 'node:module'; const require = __bktCreateRequire(import.meta.url);";

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
    noExternal: [/^@bkt\/(?!(core|llb|api|oci|fsutil)(\/|$))/, /^(?!jiti$|tapable$|node:)[^@./]/],
    external: [...SHARED, '@grpc/grpc-js', 'jiti', 'tapable', /^@bufbuild\//],
    // Bundled CommonJS dependencies require Node's built-ins (and better-sqlite3 its addon): give the ESM bundle a require.
    esbuildPlugins: [captureMetafile],
    define: {
      __BKT_BUNDLED_BETTER_SQLITE3_VERSION__: JSON.stringify(SQLITE_VERSION),
    },
    banner: { js: BANNER },
    onSuccess: async () => {
      checkBundledSqlite(binMetafile);
      writeScripts('dist-bin', binMetafile);
    },
  }),
];
