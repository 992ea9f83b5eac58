#!/usr/bin/env node
/**
 * bench/dockerfile: five Dockerfiles, each built cold and warm by bkt, by
 * buildah and by dockerd's BuildKit in the same run, printed as wall times
 * and ratios (bkt / peer; lower is better for bkt).
 *
 *   one-run      FROM busybox + one RUN
 *   ten-runs     ten chained RUNs
 *   parallel     four independent stages of `sleep 1`, copied into one image
 *   copy-2000    COPY of a 2,000-file context; warm = the same build after one file changed
 *   layer-200mb  a RUN writing a 200 MB file (one 200 MB layer)
 *
 * cold: no build cache and no base image (bkt: a fresh --root; dockerd:
 * `docker builder prune -af` and `docker image prune -af`; buildah: `buildah
 * rmi -af`), so the busybox base is pulled from the local registry too.
 * warm: the same build again at once (copy-2000: after changing one file).
 * Every builder tags the result as an image in its own store (`-t`); each
 * time is the wall time of the client command, start-up included.
 *
 * The base image is Debian's busybox-static pushed to a docker-registry on
 * 127.0.0.1 (@bkt/testkit). dockerd is started by this script on a private
 * socket and data root, with --insecure-registry for that registry, and
 * stopped by PID at the end; buildah runs with its own --root, chroot
 * isolation and the overlay driver (vfs when overlay is unavailable).
 *
 * Run by hand as root, after `npm run build`:
 *   node bench/dockerfile/run.mjs [--runs 1] [--only one-run,parallel] [--skip-docker] [--skip-buildah]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

let testkit;
try {
  testkit = await import('@bkt/testkit');
} catch (err) {
  console.error(`bench/dockerfile needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const BKT = fileURLToPath(new URL('../../packages/cli/bin/bkt.js', import.meta.url));
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    only: { type: 'string' },
    'skip-docker': { type: 'boolean', default: false },
    'skip-buildah': { type: 'boolean', default: false },
  },
});
const RUNS = Math.max(1, Number(args.runs));

/** Runs a command; resolves with its wall time in ms, rejects with its output on failure. */
function run(cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (out += c));
    p.on('error', reject);
    p.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}:\n${out.split('\n').slice(-25).join('\n')}`));
    });
  });
}

// ---------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------

/** Each scenario: its Dockerfile, its context, and what changes before the warm build. */
function scenarios(base) {
  return [
    { name: 'one-run', dockerfile: `FROM ${base}\nRUN echo one > /one\n` },
    {
      name: 'ten-runs',
      dockerfile: `FROM ${base}\n${Array.from({ length: 10 }, (_, i) => `RUN echo step ${i} >> /steps`).join('\n')}\n`,
    },
    {
      name: 'parallel',
      dockerfile:
        ['a', 'b', 'c', 'd'].map((s) => `FROM ${base} AS ${s}\nRUN sleep 1 && echo ${s} > /${s}\n`).join('') +
        `FROM ${base}\n${['a', 'b', 'c', 'd'].map((s) => `COPY --from=${s} /${s} /${s}`).join('\n')}\n`,
    },
    {
      name: 'copy-2000',
      dockerfile: `FROM ${base}\nCOPY . /ctx\n`,
      async context(dir) {
        for (let d = 0; d < 20; d++) {
          await mkdir(join(dir, `d${d}`), { recursive: true });
          for (let f = 0; f < 100; f++) await writeFile(join(dir, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(20));
        }
      },
      async beforeWarm(dir) {
        await writeFile(join(dir, 'd7', 'f42.txt'), `changed ${Date.now()}\n`);
      },
    },
    { name: 'layer-200mb', dockerfile: `FROM ${base}\nRUN head -c 209715200 /dev/urandom > /big\n` },
  ];
}

// ---------------------------------------------------------------------------
// The builders: prepare (once), cold reset, build.
// ---------------------------------------------------------------------------

function bktBuilder(work) {
  let root;
  return {
    name: 'bkt',
    async reset() {
      if (root) await rm(root, { recursive: true, force: true });
      root = await mkdtemp(join(work, 'bkt-store-'));
    },
    build: (s, df, ctx) => run('node', [BKT, 'build', '--root', root, '--progress', 'quiet', '-t', `bench/${s.name}:bkt`, '-f', df, ctx]),
    async close() {
      if (root) await rm(root, { recursive: true, force: true });
    },
  };
}

async function dockerBuilder(work, registryHost) {
  const dataRoot = await mkdtemp(join(work, 'docker-data-'));
  const sock = '/tmp/bench-docker.sock';
  const host = `unix://${sock}`;
  const dockerd = spawn(
    'dockerd',
    ['--bridge=none', '--iptables=false', '--ip6tables=false', '--data-root', dataRoot, '--exec-root', join(dataRoot, 'exec'), '--pidfile', join(dataRoot, 'docker.pid'), '-H', host, '--insecure-registry', registryHost],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  dockerd.stderr.on('data', (c) => (log = (log + c).slice(-4000)));
  const stop = async () => {
    if (dockerd.exitCode !== null || dockerd.signalCode !== null) return;
    const exited = new Promise((r) => dockerd.once('exit', r));
    dockerd.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (dockerd.exitCode === null && dockerd.signalCode === null) dockerd.kill('SIGKILL');
  };
  const env = { ...process.env, DOCKER_BUILDKIT: '1', DOCKER_HOST: host };
  const docker = (...a) => run(DOCKER, a, { env });
  for (let i = 0; ; i++) {
    try {
      await docker('version');
      break;
    } catch (err) {
      if (i > 60 || dockerd.exitCode !== null) {
        await stop();
        throw new Error(`dockerd did not start: ${err.message}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return {
    name: 'docker',
    async reset() {
      await docker('builder', 'prune', '-af');
      await docker('image', 'prune', '-af');
    },
    build: (s, df, ctx) => docker('build', '--network', 'host', '-q', '-t', `bench/${s.name}:docker`, '-f', df, ctx),
    async close() {
      await stop();
      await rm(dataRoot, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

async function buildahBuilder(work) {
  const root = await mkdtemp(join(work, 'buildah-root-'));
  const runroot = await mkdtemp(join(work, 'buildah-run-'));
  let driver = 'overlay';
  const buildah = (...a) => run('buildah', ['--root', root, '--runroot', runroot, '--storage-driver', driver, ...a]);
  try {
    await buildah('images');
  } catch {
    driver = 'vfs';
    await buildah('images');
  }
  return {
    name: `buildah (${driver})`,
    async reset() {
      await buildah('rmi', '--all', '--force');
    },
    build: (s, df, ctx) =>
      buildah('bud', '--isolation', 'chroot', '--layers', '--network', 'host', '--tls-verify=false', '-q', '-t', `bench/${s.name}:buildah`, '-f', df, ctx),
    async close() {
      await run('umount', ['-R', join(root, driver)]).catch(() => undefined);
      await rm(root, { recursive: true, force: true }).catch(() => undefined);
      await rm(runroot, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-dockerfile-'));
const registry = await testkit.startRegistry();
const builders = [];
try {
  const base = (await testkit.pushBusyboxImage(registry, 'busybox')).reference;
  builders.push(bktBuilder(work));
  if (!args['skip-docker']) builders.push(await dockerBuilder(work, registry.host));
  if (!args['skip-buildah']) builders.push(await buildahBuilder(work));

  const only = args.only ? new Set(args.only.split(',')) : undefined;
  /** times[scenario][phase][builder] = best ms */
  const rows = [];
  for (const s of scenarios(base).filter((x) => !only || only.has(x.name))) {
    const times = { cold: {}, warm: {} };
    for (const b of builders) {
      for (let i = 0; i < RUNS; i++) {
        // A fresh copy of the context per builder and run: the warm change is the same for each.
        const dir = await mkdtemp(join(work, `${s.name}-`));
        const ctx = join(dir, 'context');
        await mkdir(ctx);
        if (s.context) await s.context(ctx);
        const df = join(dir, 'Dockerfile');
        await writeFile(df, s.dockerfile);
        await b.reset();
        const cold = await b.build(s, df, ctx);
        if (s.beforeWarm) await s.beforeWarm(ctx);
        const warm = await b.build(s, df, ctx);
        times.cold[b.name] = Math.min(times.cold[b.name] ?? Infinity, cold);
        times.warm[b.name] = Math.min(times.warm[b.name] ?? Infinity, warm);
        await rm(dir, { recursive: true, force: true });
      }
      process.stderr.write(`  ${s.name} ${b.name}: cold ${times.cold[b.name].toFixed(0)} ms, warm ${times.warm[b.name].toFixed(0)} ms\n`);
    }
    rows.push({ name: s.name, times });
  }

  const peers = builders.slice(1).map((b) => b.name);
  const header = ['scenario', 'phase', 'bkt ms', ...peers.flatMap((p) => [`${p} ms`, `bkt/${p.split(' ')[0]}`])];
  const table = [header];
  for (const r of rows) {
    for (const phase of ['cold', 'warm']) {
      const t = r.times[phase];
      table.push([r.name, phase, t.bkt.toFixed(0), ...peers.flatMap((p) => [t[p].toFixed(0), (t.bkt / t[p]).toFixed(2)])]);
    }
  }
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  console.log(`\nbest of ${RUNS} run(s); wall time of each client command; ratio = bkt / peer (lower is better for bkt)\n`);
  for (const row of table) console.log(row.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
} finally {
  for (const b of builders) await b.close().catch((err) => console.error(`closing ${b.name}: ${err.message}`));
  await registry.stop();
  await rm(work, { recursive: true, force: true }).catch(() => undefined);
}
