#!/usr/bin/env node
/**
 * bench/file-copy: a 2,000-file, 50 MB tree through the solver, each figure
 * timed against a peer doing the same work in the same run (repetitions
 * interleaved). Prints medians and ratios (bkt / peer; lower is better):
 *
 * - the local context's first sync (a solve of `local://bench` alone, fresh
 *   store: the stat walk, every file read, hashed and written into a
 *   snapshot) against `tar -c | tar -x` of the tree;
 * - the sync again after one file's content changed (same size) against
 *   `find -newer` (a stat walk of the tree);
 * - a FileOp copy of the tree as `COPY . /out` of a Dockerfile emits it
 *   (wildcard source, followed symlinks: the Node copier) against `cp -a`;
 * - the same copy without those flags (one `cp -a --reflink=auto`) against `cp -a`;
 * - the content checksum of the tree (the copy's slow cache key) against
 *   `find … | xargs sha256sum`.
 *
 * Run by hand, after `npm run build` (it imports the packages' dist/):
 *   node bench/file-copy/run.mjs [--files 2000] [--mb 50] [--runs 3] [--snapshotter auto|overlay|copy]
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
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
  const old = new Date(Date.now() - 60_000);
  let written = 0;
  for (let i = 0; i < FILES; i++) {
    const sub = join(dir, `d${i % 20}`, `e${i % 7}`);
    await mkdir(sub, { recursive: true });
    const size = i === FILES - 1 ? Math.max(0, BYTES - written) : Math.floor(mean * (0.25 + 1.5 * ((i * 7919) % 1000) / 1000));
    await writeFile(join(sub, `f${i}.bin`), randomBytes(size));
    // Older than the racy window of a sync (files modified within 2 s of one are read again by the next).
    await utimes(join(sub, `f${i}.bin`), old, old);
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

/** A Definition: local://bench copied (dirCopyContents) into scratch at /out; `dockerfile`: with the flags a Dockerfile's COPY sets. */
function copyDefinition(nonce, dockerfile = false) {
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
                ...(dockerfile ? { allowWildcard: true, allowEmptyWildcard: true, followSymlink: true } : {}),
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

/** A Definition whose result is local://bench itself: solving it syncs the context. */
function syncDefinition() {
  const src = pb.Op.encode(pb.Op.fromPartial({ op: { $case: 'source', value: { identifier: 'local://bench', attrs: {} } } })).finish();
  const digest = `sha256:${createHash('sha256').update(src).digest('hex')}`;
  const out = pb.Op.encode(pb.Op.fromPartial({ inputs: [{ digest, index: 0 }], op: undefined })).finish();
  return pb.Definition.encode(pb.Definition.fromPartial({ def: [src, out] })).finish();
}

/** Runs a shell command; its wall time in ms. */
const sh = (cmd) => timed(() => execFileSync('sh', ['-c', cmd]))[0];

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-copy-'));
try {
  const tree = join(work, 'tree');
  await mkdir(tree);
  const total = await makeTree(tree);
  console.log(`tree: ${FILES} files, ${(total / 1048576).toFixed(1)} MB in ${tree}`);
  execFileSync('sync');

  const bkt = await createBkt([builtinOpsPlugin(), localSource({ dockerignore: false })]);
  const solver = await openSolver({ root: join(work, 'store'), bkt, snapshotter: args.snapshotter });

  const t = { cp: [], sha: [], tar: [], find: [], copyMs: [], dfCopyMs: [], sumMs: [], syncMs: [], changedMs: [] };
  /** The copy vertex's own time, from its progress events (the context's sync excluded). */
  const copyVertexMs = async (run, dockerfile) => {
    const { bytes, copy } = copyDefinition(run, dockerfile);
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
    return times.completed.getTime() - times.started.getTime();
  };
  const changing = join(tree, 'd3', 'e3', 'f3.bin');
  for (let run = 0; run < RUNS; run++) {
    // The peers write into directories removed only at the end (removing a tree right before a timed write skews it).
    t.cp.push(sh(`cp -a "${tree}" "${join(work, `cp-${run}`)}"`));
    t.sha.push(sh(`find "${tree}" -type f -print0 | xargs -0 sha256sum > /dev/null`));
    t.tar.push(sh(`mkdir "${join(work, `tar-${run}`)}" && tar -C "${tree}" -cf - . | tar -C "${join(work, `tar-${run}`)}" -xf -`));
    t.find.push(sh(`find "${tree}" -newer "${changing}" > /dev/null`));

    const [ms] = await timed(() => checksum(tree, { path: '/' }));
    t.sumMs.push(ms);

    // The context's first sync: a fresh store each run.
    const syncBkt = await createBkt([localSource({ dockerignore: false })]);
    const syncSolver = await openSolver({ root: join(work, `sync-store-${run}`), bkt: syncBkt, snapshotter: args.snapshotter });
    const def = syncDefinition();
    t.syncMs.push((await timed(() => syncSolver.solve({ definition: def, localDirs: { bench: tree } })))[0]);
    // One file changed (same size, other content): the sync again.
    const bytes = await readFile(changing);
    bytes[run % bytes.length] ^= 0xff;
    await writeFile(changing, bytes);
    t.changedMs.push((await timed(() => syncSolver.solve({ definition: def, localDirs: { bench: tree } })))[0]);
    await syncSolver.close();

    t.copyMs.push(await copyVertexMs(run, false));
    t.dfCopyMs.push(await copyVertexMs(run, true));
  }
  await solver.close();

  const row = (name, ours, peer, peerName) =>
    console.log(`${name.padEnd(36)} ${median(ours).toFixed(0).padStart(6)} ms   ${peerName.padEnd(26)} ${median(peer).toFixed(0).padStart(6)} ms   ratio ${(median(ours) / median(peer)).toFixed(2)}`);
  console.log(`median of ${RUNS} runs (load: ${loadavg().map((l) => l.toFixed(2)).join(' ')}):`);
  row('bkt context sync, cold', t.syncMs, t.tar, 'tar -c | tar -x');
  row('bkt context sync, one file changed', t.changedMs, t.find, 'find -newer (stat walk)');
  row('bkt COPY (Dockerfile flags)', t.dfCopyMs, t.cp, 'cp -a');
  row('bkt FileOp copy (one cp -a)', t.copyMs, t.cp, 'cp -a');
  row('bkt content checksum', t.sumMs, t.sha, 'find | xargs sha256sum');
} finally {
  await rm(work, { recursive: true, force: true });
}
