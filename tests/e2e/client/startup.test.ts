/**
 * What `bkt build --addr` loads (issue 11): a build through bktd needs the
 * session (gRPC on node:http2, both ways) and a few api namespaces — never
 * grpc-js, the solver, the store (nor its native sqlite module), the runc
 * worker, the sources, the frontends or the exporters, which are the daemon's. A Dockerfile build with `-t` (an image
 * exporter) against a real bktd, loading neither commander nor the LLB builder nor @bkt/oci, a real registry and runc, every module URL
 * the process resolves recorded by an ESM resolve hook, every CommonJS
 * file it requires by a require hook and every chunk it runs as a script
 * (`dist-bin/scripts/`) by a `vm.Script` hook; a chunk of the bundled executable
 * stands for the sources esbuild's metafile says it holds.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { BKT, RECORD_SCRIPTS_PRELOAD, REPO, removeDir, tempDir } from '../helpers.js';
import { startBktd, type RunningDaemon } from '../daemon/lib.js';

let work: string;
let hook: string;
let addr: string;
let daemon: RunningDaemon;
let registry: RegistryServer;
let n = 0;

beforeAll(async () => {
  work = await tempDir('client-startup');
  registry = await startRegistry();
  const busybox = await pushBusyboxImage(registry, 'library/busybox');
  const context = join(work, 'context');
  await mkdir(context, { recursive: true });
  await writeFile(join(context, 'hello.txt'), 'hello\n');
  await writeFile(join(context, 'Dockerfile'), `FROM ${busybox.reference}\nCOPY hello.txt /\nRUN cat /hello.txt\n`);
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
  // CommonJS files (grpc-js, better-sqlite3) are required, not resolved by the ESM hook.
  await writeFile(
    join(work, 'record-require.cjs'),
    `const Module = require('node:module');
const { appendFileSync } = require('node:fs');
const load = Module._load;
Module._load = function (request, parent, isMain) {
  try { appendFileSync(process.env.BKT_TEST_MODULES, 'cjs:' + Module._resolveFilename(request, parent, isMain) + '\\n'); } catch {}
  return load.apply(this, arguments);
};
`,
  );
  await writeFile(join(work, 'record-scripts.cjs'), RECORD_SCRIPTS_PRELOAD);
  addr = `unix://${join(work, 'bktd.sock')}`;
  daemon = await startBktd(['--addr', addr, '--root', join(work, 'daemon-root')], { cwd: work });
});

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

/** Runs the built bkt with the recording hooks; its exit code, output, and the modules it loaded (bundled chunks as their sources). */
async function traced(args: string[]): Promise<{ code: number; stdout: string; stderr: string; modules: string[] }> {
  const list = join(work, `modules-${++n}.txt`);
  await writeFile(list, '');
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--no-warnings', '--require', join(work, 'record-require.cjs'), '--require', join(work, 'record-scripts.cjs'), '--loader', pathToFileURL(hook).href, BKT, ...args],
      { cwd: work, env: { ...process.env, BKT_TEST_MODULES: list, BKT_HOST: '' }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  const meta = JSON.parse(await readFile(join(REPO, 'packages/cli/dist-bin/metafile-esm.json'), 'utf8')) as { outputs: Record<string, { inputs: Record<string, unknown> }> };
  const modules = (await readFile(list, 'utf8'))
    .split('\n')
    .filter((u) => u.startsWith('file:') || u.startsWith('cjs:') || u.startsWith('script:'))
    .flatMap((u) => {
      const m = /^(?:script:)?file:.*\/packages\/cli\/(dist-bin\/[^/]+\.js)$/.exec(u);
      if (!m) return [u];
      const out = meta.outputs[m[1]!];
      if (!out) throw new Error(`${m[1]} is not in dist-bin/metafile-esm.json: rebuild @bkt/cli`);
      return Object.keys(out.inputs).map((i) => `chunk:${i}`);
    });
  return { code, stdout, stderr, modules: [...new Set(modules)] };
}

/** What only a build in the CLI's own process needs. */
const DAEMON_SIDE = [
  /@grpc\/grpc-js/,
  /\/solver\//,
  /\/store\//,
  /better-sqlite3/,
  /\/worker-runc\//,
  /\/source-(local|image|git|http)\//,
  /\/frontend-(dockerfile|gateway)\//,
  /\/exporter-(oci|local)\//,
  /src\/(builder|preset|lazy-plugins)\.ts$/,
];

describe('bkt build --addr start-up', () => {
  it('builds through bktd loading the session and the control messages — no grpc-js, solver, store, sqlite, worker, source, frontend or exporter', async () => {
    const r = await traced(['build', '--addr', addr, '-q', '-t', 'startup/client:latest', join(work, 'context')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
    const loaded = r.modules.filter((u) => DAEMON_SIDE.some((re) => re.test(u)));
    expect(loaded).toEqual([]);
    // What it does load: the session (bundled), the Control messages — not every api namespace.
    expect(r.modules.some((u) => u.includes('session/dist/index.js'))).toBe(true);
    expect(r.modules.some((u) => /\/api\/dist\/control\.js$/.test(u))).toBe(true);
    expect(r.modules.filter((u) => /\/api\/dist\/(index|gateway|controller|imagebuilder|contentservice)\.js$/.test(u))).toEqual([]);
    // Nor what this command line does not use: commander (BKT_HOST='' and -t are read by build-argv.ts), the LLB builder,
    // @bkt/oci (platforms and image names: an annotation's platform, the image summary a quiet build does not print).
    expect(r.modules.filter((u) => /\/commander\/|\/(llb|oci)\/dist\//.test(u))).toEqual([]);
  });
});
