#!/usr/bin/env node
/**
 * Checks the import rules of docs/architecture.md over every package's product
 * code (packages/NAME/src, minus tests and test helpers) and its package.json
 * dependencies. Prints each forbidden import as `file:line: rule` and exits 1
 * when there is one; exits 0 and prints a one-line summary otherwise.
 *
 *   node scripts/check-boundaries.mjs [--root DIR]
 *
 * Packages sit on floors; an import points to a lower floor, or to a leaf:
 *
 *   top        cli, server, imagebuilder   may import anything but test helpers
 *   protocols  session                     leaves only (the wire protocols the top
 *                                          floor speaks to clients and daemons)
 *   frontends  frontend-*                  leaves only
 *   backends   source-*, exporter-*,       leaves only (never another backend,
 *              worker-*, cache-*, attest   never the solver or the store)
 *   engine     solver                      store and leaves
 *   store      store                       leaves
 *   leaves     core, llb, oci, registry,   leaves
 *              fsutil, api
 *
 * Product code never imports test helpers (`@bkt/testkit`, a `testing`
 * subpath, `*.test.*` and `*.test-util.*` files, `testing/` and `testdata/`
 * folders), and only api, server, cli, session and frontend-gateway import
 * `@grpc/grpc-js`.
 * A package-internal test helper is named `<what-it-is>.test-util.ts` and sits
 * beside the code it serves; no tsup entry reaches it, so it is never in dist.
 * A helper named after another convention (`testutil.ts`, `test-helpers.ts`)
 * is reported too.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const FLOORS = ['leaves', 'store', 'engine', 'backends', 'frontends', 'protocols', 'top'];
const LEAVES = new Set(['core', 'llb', 'oci', 'registry', 'fsutil', 'api']);
const GRPC_ALLOWED = new Set(['api', 'server', 'cli', 'session', 'frontend-gateway']);
const PROTOCOLS = new Set(['session']);
const TEST_HELPER_PACKAGES = new Set(['testkit']);

/** The floor of package `name` (the part after `@bkt/`); undefined for a test-helper package. */
export function floorOf(name) {
  if (TEST_HELPER_PACKAGES.has(name)) return undefined;
  if (LEAVES.has(name)) return 'leaves';
  if (name === 'store') return 'store';
  if (name === 'solver') return 'engine';
  if (/^(source|exporter|worker|cache)-/.test(name) || name === 'attest' || name.startsWith('attest-')) return 'backends';
  if (name.startsWith('frontend-')) return 'frontends';
  if (PROTOCOLS.has(name)) return 'protocols';
  if (['cli', 'server', 'imagebuilder'].includes(name)) return 'top';
  return 'unknown';
}

/** Why package `from` may not import package `to` (both names after `@bkt/`); null when it may. */
export function forbiddenImport(from, to) {
  if (from === to) return null;
  if (TEST_HELPER_PACKAGES.has(to)) return `product code imports the test helpers of @bkt/${to}`;
  const a = floorOf(from);
  const b = floorOf(to);
  if (a === undefined) return null; // a test-helper package may use anything
  if (a === 'unknown') return `@bkt/${from} is on no floor: add it to scripts/check-boundaries.mjs and docs/architecture.md`;
  if (b === 'unknown') return `@bkt/${to} is on no floor: add it to scripts/check-boundaries.mjs and docs/architecture.md`;
  if (a === 'top') return null;
  if (b === 'leaves') return null;
  if (a === 'backends' && b === 'backends') return `a backend (@bkt/${from}) imports another backend (@bkt/${to})`;
  if (a === 'backends' && (b === 'engine' || b === 'store')) return `a backend (@bkt/${from}) imports the ${b === 'engine' ? 'solver' : 'store'} (@bkt/${to}); reach it through @bkt/core's interfaces`;
  if (FLOORS.indexOf(b) < FLOORS.indexOf(a)) {
    if (a === 'frontends') return `a frontend (@bkt/${from}) imports @bkt/${to}; frontends use leaves only`;
    if (a === 'protocols') return `@bkt/${from} (protocols) imports @bkt/${to}; the protocols floor uses leaves only`;
    return null;
  }
  return `@bkt/${from} (${a}) imports @bkt/${to} (${b}): imports point down to a lower floor or to a leaf`;
}

/** True for files that are tests or test helpers (never built into dist). */
export function isTestFile(relPath) {
  return /\.test(-util)?\.[cm]?[jt]sx?$|(^|\/)(testing|testdata)\//.test(relPath);
}

/** A file named like a test helper of another convention (`testutil.ts`, `test-helpers.ts`, `x.test-helper.ts`). */
export function isMisnamedTestHelper(relPath) {
  return /(^|\/)(test-?utils?|test-?helpers?)\.[cm]?[jt]s$|\.test-?helpers?\.[cm]?[jt]s$|\.test-?utils\.[cm]?[jt]s$/i.test(relPath);
}

/** Specifiers a TypeScript/JavaScript source imports, with their line numbers. */
export function importsOf(source) {
  const out = [];
  // Blank out comments (keeping line breaks) so that examples in comments are not read as imports.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`\\])\/\/[^\n]*/g, '$1');
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\sfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of code.matchAll(re)) {
      const line = code.slice(0, m.index + m[0].indexOf(m[1])).split('\n').length;
      out.push({ specifier: m[1], line });
    }
  }
  return out.sort((x, y) => x.line - y.line);
}

/** The problem with one import of package `pkg`'s product file, or null. */
export function checkImport(pkg, specifier) {
  if (specifier === '@grpc/grpc-js' || specifier.startsWith('@grpc/grpc-js/')) {
    return GRPC_ALLOWED.has(pkg) ? null : `@grpc/grpc-js is imported outside ${[...GRPC_ALLOWED].join(', ')}`;
  }
  if (specifier.startsWith('.')) {
    return isTestFile(specifier.replace(/^(\.\.?\/)+/, '')) ? `product code imports the test helper ${specifier}` : null;
  }
  const m = /^@bkt\/([^/]+)(\/.*)?$/.exec(specifier);
  if (!m) return null;
  const [, to, sub] = m;
  if (sub && /(^|\/)testing(\/|$)/.test(sub)) return `product code imports the test helpers ${specifier}`;
  return forbiddenImport(pkg, to);
}

function* sourceFiles(dir, base = dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'node_modules' && name !== 'dist') yield* sourceFiles(path, base);
    } else if (/\.[cm]?[jt]sx?$/.test(name) && !name.endsWith('.d.ts')) {
      yield { path, rel: relative(base, path) };
    }
  }
}

/** Every violation under `root` (a checkout): `{ file, line, message }`. */
export function checkRepository(root) {
  const problems = [];
  const packagesDir = join(root, 'packages');
  for (const pkg of readdirSync(packagesDir).sort()) {
    const manifestPath = join(packagesDir, pkg, 'package.json');
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    const name = String(manifest.name ?? '').replace(/^@bkt\//, '');
    for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies, ...manifest.optionalDependencies })) {
      const message = checkImport(name, dep);
      if (message) problems.push({ file: relative(root, manifestPath), line: 1, message: `dependency ${dep}: ${message}` });
    }
    const src = join(packagesDir, pkg, 'src');
    if (!existsSync(src) || floorOf(name) === undefined) continue;
    for (const file of sourceFiles(src)) {
      if (isMisnamedTestHelper(file.rel)) {
        problems.push({ file: relative(root, file.path), line: 1, message: 'a test helper is named <what-it-is>.test-util.ts (beside the code it serves)' });
        continue;
      }
      if (isTestFile(file.rel)) continue;
      for (const { specifier, line } of importsOf(readFileSync(file.path, 'utf8'))) {
        const message = checkImport(name, specifier);
        if (message) problems.push({ file: relative(root, file.path), line, message });
      }
    }
  }
  return problems;
}

/**
 * Known violations being removed, from `scripts/boundary-exceptions.json`
 * under `root` (absent: none): `[{ "file": "packages/…", "message": "…",
 * "until": "what removes it" }]`. A listed violation is not reported; a
 * listed one that no longer occurs is (so the list only shrinks).
 */
export function applyExceptions(root, problems) {
  const path = join(root, 'scripts/boundary-exceptions.json');
  const exceptions = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : [];
  const matches = (e, p) => e.file === p.file && p.message.includes(e.message);
  const left = problems.filter((p) => !exceptions.some((e) => matches(e, p)));
  for (const e of exceptions) {
    if (!problems.some((p) => matches(e, p))) {
      left.push({ file: 'scripts/boundary-exceptions.json', line: 1, message: `stale exception for ${e.file} ("${e.message}"): remove it` });
    }
  }
  return left;
}

function main(argv) {
  const rootFlag = argv.indexOf('--root');
  const root = rootFlag >= 0 ? argv[rootFlag + 1] : fileURLToPath(new URL('..', import.meta.url));
  const problems = applyExceptions(root, checkRepository(root));
  for (const p of problems) console.error(`${p.file}:${p.line}: ${p.message}`);
  if (problems.length > 0) {
    console.error(`check-boundaries: ${problems.length} forbidden import(s); the rules are in docs/architecture.md`);
    return 1;
  }
  console.log('check-boundaries: every package imports within its floor rules');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
