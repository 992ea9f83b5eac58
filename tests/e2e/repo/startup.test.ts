/**
 * What the built `bkt` loads (issue 14's start-up): `--version` loads nothing
 * but its entry; a config build of examples/hello (cold and warm) never
 * imports the Dockerfile frontend, the gateway frontend and grpc-js, the
 * image exporters, the registry cache backends (they load when a build first
 * uses them: packages/cli/src/lazy-plugins.ts), the registry client (the
 * image source's first pull or lookup) or tar-stream (an archive to unpack
 * or a tar to write), and imports no CommonJS package (better-sqlite3, tapable
 * and jiti are required); a Dockerfile build does load the Dockerfile frontend. Every module URL the process resolves is
 * recorded by an ESM resolve hook, every chunk it runs as a script
 * (`dist-bin/scripts/`, V8's code cache) by a `vm.Script` hook; a chunk of the bundled executable
 * (`dist-bin/`) stands for the sources esbuild's metafile says it holds.
 */
import { execFile } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, RECORD_SCRIPTS_PRELOAD, REPO, removeDir, tempDir } from '../helpers.js';

let work: string;
let hook: string;
let scriptsHook: string;
let n = 0;

beforeAll(async () => {
  work = await tempDir('startup');
  hook = join(work, 'record-hook.mjs');
  await writeFile(
    hook,
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.BKT_TEST_MODULES, r.url + '\\n');
  return r;
}
`,
  );
  // The executable runs its chunks as scripts (dist-bin/scripts/, packages/cli/src/code-cache.ts): each recorded as its chunk.
  scriptsHook = join(work, 'record-scripts.cjs');
  await writeFile(scriptsHook, RECORD_SCRIPTS_PRELOAD);
});

afterAll(async () => {
  await removeDir(work);
});

/** Runs the built bkt with the recording hook; its exit code, output, and the module URLs it resolved. */
async function traced(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string; modules: string[] }> {
  const list = join(work, `modules-${++n}.txt`);
  await writeFile(list, '');
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--no-warnings', '--loader', pathToFileURL(hook).href, '--require', scriptsHook, BKT, ...args],
      { cwd, env: { ...process.env, BKT_TEST_MODULES: list }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  const modules = (await readFile(list, 'utf8')).split('\n').filter((u) => u.startsWith('file:') || u.startsWith('script:'));
  return { code, stdout, stderr, modules };
}

/** The module URLs, each bundled chunk replaced by the inputs it holds (`chunk:<input path>`). */
async function sourcesOf(modules: string[]): Promise<string[]> {
  const meta = JSON.parse(await readFile(join(REPO, 'packages/cli/dist-bin/metafile-esm.json'), 'utf8')) as { outputs: Record<string, { inputs: Record<string, unknown> }> };
  return modules.flatMap((u) => {
    const m = /^(?:script:)?file:.*\/packages\/cli\/(dist-bin\/[^/]+\.js)$/.exec(u);
    if (!m) return [u];
    const out = meta.outputs[m[1]!];
    if (!out) throw new Error(`${m[1]} is not in dist-bin/metafile-esm.json: rebuild @bkt/cli`);
    return Object.keys(out.inputs).map((i) => `chunk:${i}`);
  });
}

const LAZY = [
  /\/frontend-dockerfile\//,
  /\/frontend-gateway\//,
  /@grpc\/grpc-js/,
  /\/exporter-oci\/dist\//,
  // The cache backends (and localCacheDirName) load for a cache flag only; exporter-local's tar writer for a tar export only.
  /\/cache-registry\//,
  /\/exporter-local\/(dist\/write-tar|node_modules\/tar-stream)/,
  // The registry client loads for a pull or lookup only, tar-stream (the solver's) to unpack an archive only.
  /\/registry\/dist\//,
  /\/tar-stream\//,
  // The Docker engine client (node:http) loads for --load only.
  /^chunk:src\/docker-engine\.ts$/,
];

/**
 * The bundled sources of runc's code: what worker-runc's container executor
 * entry (`dist/runc-executor.js`) imports. The plugin imports it on a build's
 * first exec step, container or cache mount only.
 */
async function runcSources(): Promise<string[]> {
  const code = await readFile(join(REPO, 'packages/worker-runc/dist/runc-executor.js'), 'utf8');
  return [...code.matchAll(/^import\s+(?:[^'"]*?\sfrom\s+)?"\.\/([^"]+)"/gm)].map((m) => `chunk:../worker-runc/dist/${m[1]}`);
}

/** The CommonJS packages a config build loads: the store's database, core's hooks, the config loader. */
const COMMONJS = /\/node_modules\/(better-sqlite3|tapable|jiti)\//;

describe('bkt start-up', () => {
  it('--version resolves only the bkt entry', async () => {
    const r = await traced(['--version'], work);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(r.modules.map((u) => u.slice(u.indexOf('/packages/')))).toEqual(['/packages/cli/bin/bkt.js', '/packages/cli/dist-bin/bkt.js']);
  });

  it('a config build of examples/hello, cold and warm, loads no Dockerfile or gateway frontend, grpc-js, image exporter, cache backend, tar writer, registry client, tar-stream or runc executor', async () => {
    const runc = await runcSources();
    expect(runc.length).toBeGreaterThan(0);
    const project = join(work, 'hello');
    await cp(join(REPO, 'examples/hello'), project, { recursive: true, filter: (src) => !src.includes('/out') });
    for (const phase of ['cold', 'warm']) {
      const r = await traced(['build', '--root', join(work, 'store'), '--progress', 'plain'], project);
      expect(r.code, `${phase}: ${r.stderr}`).toBe(0);
      const sources = await sourcesOf(r.modules);
      expect(sources.filter((u) => /\/(solver|store|source-local)\//.test(u)).length, phase).toBeGreaterThan(0);
      // The chunks ran as scripts (their code cached from the second run on), not as modules.
      expect(r.modules.filter((u) => /\/dist-bin\/program-[^/]+\.js$/.test(u)).map((u) => u.slice(0, u.indexOf(':'))), phase).toEqual(['script']);
      expect([...new Set(sources.filter((u) => LAZY.some((re) => re.test(u))))], phase).toEqual([]);
      // It runs no exec step: the runc worker's plugin is loaded, its container executor (runc's code) is not.
      expect(sources.some((u) => u === 'chunk:../worker-runc/dist/index.js'), phase).toBe(true);
      expect([...new Set(sources.filter((u) => runc.includes(u)))], phase).toEqual([]);
      // CommonJS packages are required, never imported (an import has Node parse their source for export names first).
      expect(r.modules.filter((u) => COMMONJS.test(u)), phase).toEqual([]);
    }
  });

  it('a Dockerfile build loads the Dockerfile frontend when it runs', async () => {
    const ctx = join(work, 'df');
    await cp(join(REPO, 'examples/hello/src'), ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY . /\n');
    const r = await traced(['build', '--root', join(work, 'store'), '--progress', 'plain', '-o', `type=local,dest=${join(work, 'df-out')}`, ctx], work);
    expect(r.code, r.stderr).toBe(0);
    expect((await sourcesOf(r.modules)).some((u) => /\/frontend-dockerfile\//.test(u))).toBe(true);
    expect(await readFile(join(work, 'df-out', 'notes.txt'), 'utf8')).toBeTruthy();
  });
});
