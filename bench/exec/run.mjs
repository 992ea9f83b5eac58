#!/usr/bin/env node
/**
 * bench/exec: the cost of an exec step in bkt's runc worker.
 *
 * 1. 20 sequential trivial steps (`echo N > /stepN`, each on the previous
 *    one's root) through the solver (after one untimed step: a process's
 *    one-time costs are not a step's; minus the same build without the
 *    steps), against 20 raw `runc run`s of an
 *    equivalent bundle (same busybox rootfs, same command, runc's default
 *    spec) in the same run. Prints the time per step, wall and CPU (this
 *    process's and its reaped children's: runc, the root holders; the
 *    figure a busy machine changes least), and the ratios
 *    bkt / raw runc (lower is better; aim: ≤ 1.2× for `network: none`), for
 *    the default sandbox network (slirp4netns) and for `network: none` (what
 *    the raw bundle has). A second reference, "raw runc on an overlay",
 *    does what a step's root needs and the plain bundle skips — each step
 *    on an overlay of the previous steps' layers, mounted and unmounted
 *    around `runc run` by one `sh -c` — so the ratio against it is what
 *    bkt adds beyond the overlay (whose unmount syncs the upper's
 *    filesystem).
 * 2. 4 independent `sleep 1` steps merged: the build's wall time (aim: < 1.6 s).
 *
 * `--baseline FILE` (another build of @bkt/worker-runc's dist/index.js,
 * copied inside packages/worker-runc so that its imports resolve, e.g.
 * packages/worker-runc/.baseline/index.js built from an earlier commit) adds
 * its `network: none` row, measured in the same runs, interleaved: an A/B of
 * a change under the same load. `--only-none` skips the sandbox rows and the
 * parallel sleeps.
 *
 * Run by hand as root, after `npm run build` (it imports the packages' dist/):
 *   node bench/exec/run.mjs [--steps 20] [--runs 3] [--baseline FILE] [--only-none]
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

let corePkg, llbPkg, solverPkg, localPkg, workerPkg, testkitPkg;
try {
  [corePkg, llbPkg, solverPkg, localPkg, workerPkg, testkitPkg] = await Promise.all([
    import('@bkt/core'),
    import('@bkt/llb'),
    import('@bkt/solver'),
    import('@bkt/source-local'),
    import('@bkt/worker-runc'),
    import('@bkt/testkit'),
  ]);
} catch (err) {
  console.error(`bench/exec needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const { createBkt } = corePkg;
const { local, merge, marshalBytes } = llbPkg;
const { openSolver, builtinOpsPlugin } = solverPkg;
const localSource = localPkg.default;
const runcWorker = workerPkg.default;
const { makeBusyboxRootfs } = testkitPkg;

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '20' },
    runs: { type: 'string', default: '3' },
    baseline: { type: 'string' },
    'only-none': { type: 'boolean', default: false },
  },
});
const STEPS = Number(args.steps);
const RUNS = Number(args.runs);
/**
 * CPU time of this process and of the children it has reaped (runc, the
 * root holders), in ms, from /proc/self/stat: unlike the wall time, hardly
 * changed by what else the machine runs.
 */
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
function cpuMs() {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  // utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after "pid (comm) ".
  return ((Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 1000) / TICKS;
}
const clock = () => ({ wall: performance.now(), cpu: cpuMs() });
/** Wall and CPU ms per step between two clocks, less `minus` (a clock difference) when given. */
const perStep = (t0, t1, minus = { wall: 0, cpu: 0 }) => ({ wall: (t1.wall - t0.wall - minus.wall) / STEPS, cpu: (t1.cpu - t0.cpu - minus.cpu) / STEPS });
const since = (t0) => { const t1 = clock(); return { wall: t1.wall - t0.wall, cpu: t1.cpu - t0.cpu }; };
const baselineWorker = args.baseline ? (await import(resolve(args.baseline))).default : undefined;

if (process.getuid?.() !== 0) {
  console.error('bench/exec runs containers: run it as root.');
  process.exit(1);
}

const dir = await mkdtemp(join(tmpdir(), 'bkt-bench-exec-'));
const base = await makeBusyboxRootfs(join(dir, 'base'));

/** 20 raw `runc run`s of a bundle with runc's default spec over a copy of the base; wall and CPU ms per step. */
let rawRuns = 0;
function rawRunc() {
  const bundle = join(dir, `raw-bundle-${++rawRuns}`);
  const runcRoot = join(dir, 'raw-runc-state');
  mkdirSync(bundle);
  cpSync(base, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  execFileSync('runc', ['spec'], { cwd: bundle });
  const spec = JSON.parse(execFileSync('cat', [join(bundle, 'config.json')], { encoding: 'utf8' }));
  spec.process.terminal = false;
  spec.root.readonly = false;
  const t0 = clock();
  for (let i = 1; i <= STEPS; i++) {
    spec.process.args = ['/bin/sh', '-c', `echo ${i} > /step${i}`];
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    execFileSync('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `raw-${process.pid}-${rawRuns}-${i}`], { stdio: 'ignore' });
  }
  return perStep(t0, clock());
}

/** As rawRunc, each step on an overlay (lowers: the earlier steps' uppers, then the base) mounted and unmounted by one sh; wall and CPU ms per step. */
function rawRuncOverlay() {
  const bundle = join(dir, `raw-bundle-${++rawRuns}`);
  const runcRoot = join(dir, 'raw-runc-state');
  const mnt = join(bundle, 'rootfs');
  mkdirSync(mnt, { recursive: true });
  execFileSync('runc', ['spec'], { cwd: bundle });
  const spec = JSON.parse(execFileSync('cat', [join(bundle, 'config.json')], { encoding: 'utf8' }));
  spec.process.terminal = false;
  spec.root.readonly = false;
  const lowers = [base];
  const t0 = clock();
  for (let i = 1; i <= STEPS; i++) {
    const upper = join(bundle, `upper-${i}`);
    const work = join(bundle, `work-${i}`);
    mkdirSync(upper);
    mkdirSync(work);
    spec.process.args = ['/bin/sh', '-c', `echo ${i} > /step${i}`];
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    const options = `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`;
    execFileSync(
      'sh',
      ['-c', 'mount -t overlay -o "$1" overlay "$2" || exit 1; runc --root "$3" run --bundle "$4" "$5"; rc=$?; umount "$2"; exit $rc', 'sh', options, mnt, runcRoot, bundle, `rawov-${process.pid}-${rawRuns}-${i}`],
      { stdio: 'ignore' },
    );
    lowers.unshift(upper);
  }
  return perStep(t0, clock());
}

async function withSolver(fn, worker = runcWorker) {
  const bkt = await createBkt([localSource(), builtinOpsPlugin(), worker()]);
  const root = join(dir, `store-${Math.random().toString(36).slice(2)}`);
  const solver = await openSolver({ root, bkt });
  try {
    return await fn(solver);
  } finally {
    await solver.close();
    await bkt.close();
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * STEPS sequential steps in one build, minus the same build without them
 * (loading the base, warm); wall and CPU ms per step. One step runs first,
 * untimed: what a process pays once (loading the worker's code, starting its
 * watchdog and its first root process) is no step's cost, as the raw loop's
 * `runc spec` and copy of the rootfs are not timed.
 */
async function bktSteps(network, salt, worker) {
  return withSolver(async (solver) => {
    const baseState = local('base');
    const solveOf = (state) => solver.solve({ definition: marshalBytes(state), localDirs: { base } });
    await solveOf(baseState);
    await solveOf(baseState.run({ shell: `true ${salt}`, network }).root());
    const t0 = clock();
    await solveOf(baseState);
    const baseCost = since(t0);
    let state = baseState;
    for (let i = 1; i <= STEPS; i++) state = state.run({ shell: `echo ${i} ${salt} > /step${i}`, network }).root();
    const t1 = clock();
    await solveOf(state);
    return perStep(t1, clock(), baseCost);
  }, worker);
}

/** 4 independent `sleep 1` steps, merged; wall ms. */
async function parallelSleeps(salt, maxParallelism) {
  const bkt = await createBkt([localSource(), builtinOpsPlugin(), runcWorker()]);
  const root = join(dir, `store-par-${salt}`);
  const solver = await openSolver({ root, bkt, ...(maxParallelism ? { maxParallelism } : {}) });
  try {
    await solver.solve({ definition: marshalBytes(local('base')), localDirs: { base } });
    const parts = [1, 2, 3, 4].map((i) => local('base').run({ shell: `sleep 1; echo ${i} ${salt} > /p${i}` }).root());
    const t0 = performance.now();
    await solver.solve({ definition: marshalBytes(merge(parts)), localDirs: { base } });
    return performance.now() - t0;
  } finally {
    await solver.close();
    await bkt.close();
    await rm(root, { recursive: true, force: true });
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(1)} ms`;

try {
  const raw = [];
  const rawOverlay = [];
  const sandbox = [];
  const none = [];
  const baseline = [];
  const loads = [];
  for (let r = 0; r < RUNS; r++) {
    loads.push(Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]));
    raw.push(rawRunc());
    rawOverlay.push(rawRuncOverlay());
    if (!args['only-none']) sandbox.push(await bktSteps('sandbox', `s${r}`));
    // Alternating which goes first, so that neither always runs right after the raw runs.
    const pair = [async () => none.push(await bktSteps('none', `n${r}`)), async () => baselineWorker && baseline.push(await bktSteps('none', `b${r}`, baselineWorker))];
    for (const run of r % 2 ? pair.reverse() : pair) await run();
  }
  const med = (rows) => ({ wall: median(rows.map((r) => r.wall)), cpu: median(rows.map((r) => r.cpu)) });
  const rawMs = med(raw);
  const rawOvMs = med(rawOverlay);
  console.log(`${STEPS} sequential trivial steps, median of ${RUNS} runs, per step, wall (CPU of the process and its children) (1-min load average ${Math.min(...loads)}..${Math.max(...loads)}):`);
  const row = (label, rows, overlay = true) => {
    const m = med(rows);
    const ratios = `ratio ${(m.wall / rawMs.wall).toFixed(2)}x (CPU ${(m.cpu / rawMs.cpu).toFixed(2)}x)`;
    const ov = overlay ? `; ${(m.wall / rawOvMs.wall).toFixed(2)}x the overlay one (CPU ${(m.cpu / rawOvMs.cpu).toFixed(2)}x)` : '';
    console.log(`  ${label.padEnd(23)} ${fmt(m.wall)} (${fmt(m.cpu)})   ${ratios}${ov}`);
  };
  console.log(`  raw runc run            ${fmt(rawMs.wall)} (${fmt(rawMs.cpu)})`);
  console.log(`  raw runc on an overlay  ${fmt(rawOvMs.wall)} (${fmt(rawOvMs.cpu)})`);
  row('bkt, network none', none);
  if (baselineWorker) row('baseline, network none', baseline);
  if (!args['only-none']) {
    row('bkt, network sandbox', sandbox, false);

    const walls = [];
    for (let r = 0; r < RUNS; r++) walls.push(await parallelSleeps(`w${r}`));
    const walls4 = [];
    for (let r = 0; r < RUNS; r++) walls4.push(await parallelSleeps(`x${r}`, 4));
    console.log(`4 independent \`sleep 1\` steps, wall (median of ${RUNS}):`);
    console.log(`  default parallelism     ${fmt(median(walls))}`);
    console.log(`  maxParallelism 4        ${fmt(median(walls4))}`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
