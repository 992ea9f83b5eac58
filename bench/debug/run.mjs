#!/usr/bin/env node
/**
 * bench/debug: the interactive containers behind `bkt debug`, `--invoke`
 * and the Controller's / LLBBridge's containers (the runc worker's
 * ContainerProvider), against dockerd's containers in the same run:
 *
 * 1. a container for one process, start to removal: bkt `newContainer` +
 *    `start(['true'])` + `wait` + `release` (an overlay over a snapshot,
 *    runc run, everything unmounted) vs `docker run --rm --network none IMG true`;
 * 2. a further process in a running container: bkt `start` on a container
 *    whose init sleeps (runc exec) vs `docker exec C true`;
 * 3. the same with a terminal: bkt `start({ tty: true })` vs `docker exec -t C true`.
 *
 * The image is the same busybox tree (bkt: a snapshot; dockerd: `docker
 * import` of it). dockerd runs with a temp data-root and socket, no bridge.
 * The docker figures include the docker CLI's own start (what a user
 * waits for). Prints medians and the ratio bkt / docker (lower is better).
 *
 * Run by hand as root after `npm run build`: node bench/debug/run.mjs [--runs 15]
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';

let corePkg, storePkg, workerPkg, testkitPkg, apiPkg;
try {
  [corePkg, storePkg, workerPkg, testkitPkg, apiPkg] = await Promise.all([
    import('@bkt/core/testing'),
    import('@bkt/store'),
    import('@bkt/worker-runc'),
    import('@bkt/testkit'),
    import('@bkt/api/pb'),
  ]);
} catch (err) {
  console.error(`bench/debug needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const { testBuildContext } = corePkg;
const { Store } = storePkg;
const runcWorker = workerPkg.default;
const { makeBusyboxRootfs } = testkitPkg;
const pb = apiPkg;

const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '15' } } });
const RUNS = Number(args.runs);
if (process.getuid?.() !== 0) {
  console.error('bench/debug runs containers and dockerd: run it as root.');
  process.exit(1);
}

const run = promisify(execFile);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(1)} ms`;
const time = async (fn) => {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
};

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-debug-'));
let dockerd;
let store;
try {
  // bkt: a store with the busybox tree as a snapshot, the runc worker's exec executor.
  store = await Store.open(join(work, 'store'), 'overlay');
  const mutable = await store.snapshotter.prepare(null);
  await makeBusyboxRootfs(mutable.path);
  const base = await mutable.commit();
  const executor = runcWorker().opExecutors[0];
  const { ctx, finish } = testBuildContext({ root: store.root, snapshotter: store.snapshotter, content: store.content, records: store.records });
  const request = { mounts: [pb.Mount.fromPartial({ input: 0, dest: '/', output: -1 })], inputs: [{ snapshot: base }], network: 'none' };

  // dockerd: temp data-root and socket, the same tree imported as an image.
  const dataRoot = join(work, 'docker-data');
  const host = `unix://${join(work, 'docker.sock')}`;
  dockerd = spawn('dockerd', ['--bridge=none', '--iptables=false', '--ip6tables=false', '--data-root', dataRoot, '--exec-root', join(dataRoot, 'exec'), '--pidfile', join(dataRoot, 'docker.pid'), '-H', host], { stdio: 'ignore' });
  const docker = (...a) => run('docker', ['-H', host, ...a], { maxBuffer: 64 << 20 });
  for (let i = 0; ; i++) {
    try {
      await docker('version');
      break;
    } catch (err) {
      if (i > 60) throw new Error(`dockerd did not start: ${err.message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const rootfs = await makeBusyboxRootfs(join(work, 'rootfs'));
  await run('tar', ['-C', rootfs, '-cf', join(work, 'rootfs.tar'), '.']);
  await docker('import', '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', join(work, 'rootfs.tar'), 'bench/debug-busybox');
  const { stdout: listing } = await run('sh', ['-c', `docker -H ${host} create bench/debug-busybox /bin/true | xargs -I{} sh -c 'docker -H ${host} export {} | tar t | grep -c bin/; docker -H ${host} rm {} >/dev/null'`]);
  if (Number(listing.trim()) < 10) throw new Error(`the imported image lacks the busybox tree (${listing.trim()} entries under bin/)`);

  const bktOne = [];
  const dockerOne = [];
  for (let r = 0; r < RUNS; r++) {
    bktOne.push(
      await time(async () => {
        const c = await executor.newContainer(request, ctx);
        const p = await c.start({ args: ['true'] });
        await p.wait();
        await c.release();
      }),
    );
    dockerOne.push(await time(() => docker('run', '--rm', '--network', 'none', 'bench/debug-busybox', '/bin/true')));
  }

  const c = await executor.newContainer(request, ctx);
  await c.start({ args: ['sleep', '3600'] });
  const { stdout: id } = await docker('run', '-d', '--network', 'none', 'bench/debug-busybox', '/bin/sleep', '3600');
  const bktExec = [];
  const dockerExec = [];
  const bktTty = [];
  const dockerTty = [];
  for (let r = 0; r < RUNS; r++) {
    bktExec.push(await time(async () => (await c.start({ args: ['true'] })).wait()));
    dockerExec.push(await time(() => docker('exec', id.trim(), '/bin/true')));
    bktTty.push(await time(async () => (await c.start({ args: ['true'], tty: true })).wait()));
    dockerTty.push(await time(() => docker('exec', '-t', id.trim(), '/bin/true')));
  }
  await c.release();
  await docker('rm', '-f', id.trim());
  await finish();

  const line = (what, b, d) => console.log(`  ${what.padEnd(44)} bkt ${fmt(median(b)).padStart(9)}   docker ${fmt(median(d)).padStart(9)}   ratio ${(median(b) / median(d)).toFixed(2)}x`);
  console.log(`interactive containers, median of ${RUNS} (bkt / dockerd; lower is better):`);
  line('a container for one process, start to removal', bktOne, dockerOne);
  line('a process beside a running one', bktExec, dockerExec);
  line('the same with a terminal', bktTty, dockerTty);
} finally {
  await store?.close().catch(() => undefined);
  if (dockerd) {
    dockerd.kill('SIGTERM');
    await new Promise((r) => dockerd.once('exit', r));
    await run('umount', ['-R', join(work, 'docker-data')]).catch(() => undefined);
  }
  await rm(work, { recursive: true, force: true });
}
