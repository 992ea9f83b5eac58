#!/usr/bin/env node
/**
 * bench/file-copy: a FileOp copy of a 2,000-file, 50 MB tree through the
 * solver, and the content checksum of that tree (the copy's slow cache key),
 * timed against `cp -a` and `find … | xargs sha256sum` of the same tree in
 * the same run. Prints times and ratios (bkt / peer; lower is better).
 *
 * Run by hand, after `npm run build` (it imports the packages' dist/):
 *   node bench/file-copy/run.mjs [--files 2000] [--mb 50] [--runs 3] [--snapshotter auto|overlay|copy]
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

let solverPkg, corePkg, fsutilPkg, apiPkg, localPkg;
try {
  [solverPkg, corePkg, fsutilPkg, apiPkg, localPkg] = await Promise.all([
    import('@bkt/solver'),
    import('@bkt/core'),
    import('@bkt/fsutil'),
    import('@bkt/api'),
    import('@bkt/source-local'),
  ]);
} catch (err) {
  console.error(`bench/file-copy needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const { openSolver, builtinOpsPlugin } = solverPkg;
const { createBkt } = corePkg;
const { checksum } = fsutilPkg;
const { pb } = apiPkg;
const localSource = localPkg.default;

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '2000' },
    mb: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
    snapshotter: { type: 'string', default: 'auto' },
  },
});
const FILES = Number(args.files);
const BYTES = Number(args.mb) * 1024 * 1024;
const RUNS = Number(args.runs);

/** A tree of FILES files in nested directories, sizes spread around the mean, BYTES in total. */
async function makeTree(dir) {
  const mean = BYTES / FILES;
  let written = 0;
  for (let i = 0; i < FILES; i++) {
    const sub = join(dir, `d${i % 20}`, `e${i % 7}`);
    await mkdir(sub, { recursive: true });
    const size = i === FILES - 1 ? Math.max(0, BYTES - written) : Math.floor(mean * (0.25 + 1.5 * ((i * 7919) % 1000) / 1000));
    await writeFile(join(sub, `f${i}.bin`), randomBytes(size));
    written += size;
  }
  return written;
}

function timed(fn) {
  const t0 = process.hrtime.bigint();
  const r = fn();
  if (r && typeof r.then === 'function') return r.then((v) => [Number(process.hrtime.bigint() - t0) / 1e6, v]);
  return [Number(process.hrtime.bigint() - t0) / 1e6, r];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A Definition: local://bench copied (dirCopyContents) into scratch at /out. */
function copyDefinition(nonce) {
  const ops = [];
  const add = (op) => {
    const bytes = pb.Op.encode(pb.Op.fromPartial(op)).finish();
    ops.push(bytes);
    return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  };
  const src = add({ op: { $case: 'source', value: { identifier: 'local://bench', attrs: {} } } });
  const copy = add({
    inputs: [{ digest: src, index: 0 }],
    op: {
      $case: 'file',
      value: {
        actions: [
          {
            input: -1,
            secondaryInput: 0,
            output: 0,
            action: {
              $case: 'copy',
              value: pb.FileActionCopy.fromPartial({
                src: '/',
                dest: `/out-${nonce}`, // a new op digest per run: never a cache hit
                mode: -1,
                timestamp: -1,
                dirCopyContents: true,
                createDestPath: true,
              }),
            },
          },
        ],
      },
    },
  });
  add({ inputs: [{ digest: copy, index: 0 }], op: undefined });
  return { bytes: pb.Definition.encode(pb.Definition.fromPartial({ def: ops })).finish(), copy };
}

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-copy-'));
try {
  const tree = join(work, 'tree');
  await mkdir(tree);
  const total = await makeTree(tree);
  console.log(`tree: ${FILES} files, ${(total / 1048576).toFixed(1)} MB in ${tree}`);
  execFileSync('sync');

  const bkt = await createBkt([builtinOpsPlugin(), localSource({ dockerignore: false })]);
  const solver = await openSolver({ root: join(work, 'store'), bkt, snapshotter: args.snapshotter });

  const cp = [];
  const sha = [];
  const copyMs = [];
  const sumMs = [];
  for (let run = 0; run < RUNS; run++) {
    const dest = join(work, `cp-${run}`);
    cp.push(timed(() => execFileSync('cp', ['-a', tree, dest]))[0]);
    sha.push(timed(() => execFileSync('sh', ['-c', `find "${tree}" -type f -print0 | xargs -0 sha256sum > /dev/null`]))[0]);
    await rm(dest, { recursive: true, force: true });

    const [ms] = await timed(() => checksum(tree, { path: '/' }));
    sumMs.push(ms);

    // The copy vertex's own time, from its progress events (source loading excluded).
    const { bytes, copy } = copyDefinition(run);
    const times = {};
    await solver.solve({
      definition: bytes,
      localDirs: { bench: tree },
      onProgress: (ev) => {
        if (ev.type === 'vertex' && ev.vertex.digest === copy) {
          if (ev.vertex.started) times.started = ev.vertex.started;
          if (ev.vertex.completed) times.completed = ev.vertex.completed;
        }
      },
    });
    if (!times.started || !times.completed) throw new Error('the copy vertex reported no start/completion');
    copyMs.push(times.completed.getTime() - times.started.getTime());
  }
  await solver.close();

  const row = (name, ours, peer, peerName) =>
    console.log(`${name.padEnd(28)} ${median(ours).toFixed(0).padStart(6)} ms   ${peerName.padEnd(26)} ${median(peer).toFixed(0).padStart(6)} ms   ratio ${(median(ours) / median(peer)).toFixed(2)}`);
  console.log(`median of ${RUNS} runs:`);
  row('bkt FileOp copy', copyMs, cp, 'cp -a');
  row('bkt content checksum', sumMs, sha, 'find | xargs sha256sum');
} finally {
  await rm(work, { recursive: true, force: true });
}
