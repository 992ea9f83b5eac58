#!/usr/bin/env node
/**
 * bench/cache: a CI runner's build from a registry cache, timed against a
 * peer moving the same blobs in the same run (ratio = bkt / peer; lower is
 * better):
 *
 *   import  `bkt build --cache-from type=registry,ref=…` of a fully cached
 *           Dockerfile on an empty store, no output (every step CACHED: the
 *           final image's layers pulled into the store as a lazy result,
 *           unpacked only when something needs its tree)  vs
 *           `skopeo copy docker://… oci:…` of the image made of those layers
 *           (pull only), and that copy followed by `umoci unpack` (pull and
 *           unpack: what an import that unpacks would cost)
 *   export  `bkt build --cache-to type=registry,mode=max` on a warm store
 *           into an empty repository  vs  `skopeo copy oci:… docker://…` of
 *           the same image into an empty repository
 *
 * The Dockerfile: FROM the test registry's busybox, a RUN writing --mb MB
 * (half random, half text), a COPY of a context file, a second RUN.
 *
 * Each run times bkt and its peers one after the other (interleaved); the
 * figures are medians over the runs (the best run in parentheses).
 *
 * Run by hand as root, after `npm run build`:
 *   node bench/cache/run.mjs [--mb 200] [--runs 5]
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

let registryTesting, testkit;
try {
  [registryTesting, testkit] = await Promise.all([import('@bkt/registry/testing'), import('@bkt/testkit')]);
} catch (err) {
  console.error(`bench/cache needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const { startRegistry } = registryTesting;
const { pushBusyboxImage } = testkit;
const BKT = fileURLToPath(new URL('../../packages/cli/bin/bkt.js', import.meta.url));

const { values: args } = parseArgs({ options: { mb: { type: 'string', default: '200' }, runs: { type: 'string', default: '5' } } });
const MB = Number(args.mb);
const RUNS = Number(args.runs);

function sh(cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (out += c));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${argv.join(' ')} (exit ${code}):\n${out.slice(-4000)}`))));
  });
}

async function time(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const best = (xs) => Math.min(...xs);

function row(name, bkt, peer, peerName) {
  const ms = (xs) => `${median(xs).toFixed(0).padStart(6)} ms (${best(xs).toFixed(0)})`;
  console.log(`${name.padEnd(7)} bkt ${ms(bkt)}   ${peerName.padEnd(28)} ${ms(peer)}   ratio ${(median(bkt) / median(peer)).toFixed(2)}`);
}

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-cache-'));
let registry;
try {
  registry = await startRegistry();
  const busybox = await pushBusyboxImage(registry, 'library/busybox');
  const project = join(work, 'project');
  await mkdir(project);
  const half = Math.floor(MB / 2);
  await writeFile(
    join(project, 'Dockerfile'),
    [
      `FROM ${busybox.reference}`,
      `RUN head -c ${half}m /dev/urandom > /random && yes "the quick brown fox jumps over the lazy dog" | head -c ${MB - half}m > /text`,
      'COPY ctx.txt /ctx.txt',
      'RUN cat /ctx.txt > /final',
      '',
    ].join('\n'),
  );
  await writeFile(join(project, 'ctx.txt'), 'context\n');
  const cacheRef = `${registry.host}/bench/cache:max`;
  const imageRef = `${registry.host}/bench/app:v1`;
  const warm = join(work, 'store-warm');
  const bkt = (root, extra) => sh('node', [BKT, 'build', '--root', root, '--progress', 'quiet', ...extra, project], { cwd: project });
  await bkt(warm, ['--cache-to', `type=registry,ref=${cacheRef},mode=max`, '--output', `type=image,name=${imageRef},push=true`]);
  const layout = join(work, 'layout');
  await sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${imageRef}`, `oci:${layout}:v1`]);
  console.log(`Dockerfile with a ${MB} MB RUN layer; medians of ${RUNS} runs (best in parentheses)`);
  // The timed commands, to profile one by hand (--cpu-prof, strace) while the script runs; ROOT/DEST are fresh per run.
  console.log(`import: cd ${project} && node ${BKT} build --root ROOT --progress quiet --cache-from type=registry,ref=${cacheRef} .`);
  console.log(`        skopeo copy --src-tls-verify=false docker://${imageRef} oci:DEST:v1`);
  console.log(`export: cd ${project} && node ${BKT} build --root ${warm} --progress quiet --cache-to type=registry,ref=REGISTRY/bench/cache:max,mode=max .`);
  console.log(`        skopeo copy --dest-tls-verify=false oci:${layout}:v1 docker://REGISTRY/bench/peer:v1`);

  const bktImport = [];
  const peerImport = [];
  const peerUnpack = [];
  const bktExport = [];
  const peerExport = [];
  for (let i = 0; i < RUNS; i++) {
    // import: a fresh store, every step from the cache.
    const root = join(work, `store-${i}`);
    bktImport.push(await time(() => bkt(root, ['--cache-from', `type=registry,ref=${cacheRef}`])));
    await rm(root, { recursive: true, force: true });
    const dest = join(work, `pull-${i}`);
    peerImport.push(await time(() => sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${imageRef}`, `oci:${dest}:v1`])));
    await rm(dest, { recursive: true, force: true });
    const bundle = join(work, `bundle-${i}`);
    peerUnpack.push(
      await time(async () => {
        await sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${imageRef}`, `oci:${dest}:v1`]);
        await sh('umoci', ['unpack', '--image', `${dest}:v1`, bundle]);
      }),
    );
    await rm(dest, { recursive: true, force: true });
    await rm(bundle, { recursive: true, force: true });
    // export: the warm store into an empty repository (a registry of its own: nothing to mount or skip).
    const target = await startRegistry();
    try {
      bktExport.push(await time(() => bkt(warm, ['--cache-to', `type=registry,ref=${target.host}/bench/cache:max,mode=max`])));
      peerExport.push(await time(() => sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${target.host}/bench/peer:v1`])));
    } finally {
      await target.stop();
    }
  }
  console.log(`load: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  row('import', bktImport, peerImport, 'skopeo copy docker:// oci:');
  row('import', bktImport, peerUnpack, 'skopeo copy + umoci unpack');
  row('export', bktExport, peerExport, 'skopeo copy oci: docker://');
} finally {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
}
