#!/usr/bin/env node
/**
 * bench/compare: the table of issue 14 in one command — five Dockerfiles ×
 * four modes, built by bkt (daemonless CLI), dockerd's BuildKit and buildah
 * in the same run, repetitions interleaved, medians and ratios printed as
 * one table (ratio = bkt / peer; lower is better for bkt). Issue 14's goal is
 * measured against BuildKit (here dockerd's; buildkitd is not installed on
 * the reference machine); buildah is a further reference point.
 *
 * Cases (busybox base from a registry on 127.0.0.1, RUN with network none):
 *   one-run      FROM busybox + one RUN
 *   ten-runs     ten chained RUNs
 *   parallel     four independent `sleep 1` stages, copied into one image
 *   copy-2000    COPY of a 2,000-file / 51 MB context
 *   layer-200mb  a RUN writing 200 MB of random bytes (one 200 MB layer)
 *
 * Modes, in this order for each builder, case and repetition:
 *   cold     an empty store (no build cache, no base image): `-t` into the builder's image store
 *   warm     the same build again, nothing changed (a no-op rebuild)
 *   changed  copy-2000 only: the build again after one file's content changed
 *   export   an empty store again, the build with an OCI image tarball output
 *            (bkt: `-o type=oci,dest=FILE`; dockerd 20.10's BuildKit has no oci
 *            exporter: `build -t` then `docker save -o FILE`; buildah: `bud`
 *            then `push … oci-archive:FILE`). Not the same work: `docker save`
 *            writes its layers uncompressed, bkt's oci exporter gzips them
 *            (level 6, as BuildKit's does by default); for the same work give
 *            bkt `compression=uncompressed` (this bench does not)
 *
 * Each time is the wall time of the client command(s), start-up included.
 * Repetitions are interleaved (rep 1 of every case and builder, then rep 2, …)
 * so a noisy minute of the machine hits every builder alike, and the builders'
 * order turns each repetition (bkt, docker; then docker, bkt; …): a build run
 * right after another builder's is slowed by that one's leftovers (with two
 * bkt builds in a fixed order after docker, whichever ran first, right after
 * docker, had the slower cold and export medians).
 *
 * dockerd is started by this script (`--bridge=none --iptables=false`, a temp
 * data root and exec root, a private unix socket, --insecure-registry for the
 * local registry) and stopped by its PID at the end; buildah runs with its own
 * --root/--runroot, oci (runc) isolation — chroot isolation cannot run with
 * network none — and overlay (vfs if overlay is refused).
 * A builder that is not installed is skipped, and the table says so.
 *
 * Run by hand as root, after `npm run build`:
 *   node bench/compare/run.mjs [--runs 3] [--only one-run,copy-2000] [--modes cold,warm]
 *                              [--skip-docker] [--skip-buildah] [--json FILE]
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

let testkit;
try {
  testkit = await import('@bkt/testkit');
} catch (err) {
  console.error(`bench/compare needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const BKT = fileURLToPath(new URL('../../packages/cli/bin/bkt.js', import.meta.url));
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    only: { type: 'string' },
    modes: { type: 'string' },
    'skip-docker': { type: 'boolean', default: false },
    'skip-buildah': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const RUNS = Math.max(1, Number(args.runs));
const ALL_MODES = ['cold', 'warm', 'changed', 'export'];
const MODES = args.modes ? args.modes.split(',') : ALL_MODES;
for (const m of MODES) if (!ALL_MODES.includes(m)) throw new Error(`--modes: unknown mode ${m} (known: ${ALL_MODES.join(', ')})`);

if (process.getuid?.() !== 0) {
  console.error('bench/compare runs containers and dockerd: run it as root.');
  process.exit(1);
}

/** Runs a command; resolves with its wall time in ms, rejects with its output on failure. */
function run(cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    p.stdout.on('data', (c) => (out = (out + c).slice(-20000)));
    p.stderr.on('data', (c) => (out = (out + c).slice(-20000)));
    p.on('error', reject);
    p.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}:\n${out.split('\n').slice(-25).join('\n')}`));
    });
  });
}

const installed = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// ---------------------------------------------------------------------------
// The cases.

/** The 2,000-file context: 20 directories of 100 files of 25.5 KiB (51 MB), base64 of random bytes. */
async function copyContext(dir) {
  for (let d = 0; d < 20; d++) {
    await mkdir(join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) await writeFile(join(dir, `d${d}`, `f${f}.txt`), randomBytes(19_584).toString('base64'));
  }
}

function cases(base) {
  return [
    { name: 'one-run', dockerfile: `FROM ${base}\nRUN echo one > /one\n` },
    { name: 'ten-runs', dockerfile: `FROM ${base}\n${Array.from({ length: 10 }, (_, i) => `RUN echo step ${i} >> /steps`).join('\n')}\n` },
    {
      name: 'parallel',
      dockerfile:
        ['a', 'b', 'c', 'd'].map((s) => `FROM ${base} AS ${s}\nRUN sleep 1 && echo ${s} > /${s}\n`).join('') +
        `FROM ${base}\n${['a', 'b', 'c', 'd'].map((s) => `COPY --from=${s} /${s} /${s}`).join('\n')}\n`,
    },
    { name: 'copy-2000', dockerfile: `FROM ${base}\nCOPY . /ctx\n`, context: copyContext, changes: true },
    { name: 'layer-200mb', dockerfile: `FROM ${base}\nRUN head -c 209715200 /dev/urandom > /big\n` },
  ];
}

// ---------------------------------------------------------------------------
// The builders: reset (an empty store), build (-t), export (an OCI tarball).

function bktBuilder(work) {
  let root;
  const build = (c, df, ctx, extra) =>
    run('node', [BKT, 'build', '--root', root, '--progress', 'quiet', '--network', 'none', '-f', df, ...extra, ctx]);
  return {
    name: 'bkt',
    async reset() {
      if (root) await rm(root, { recursive: true, force: true });
      root = await mkdtemp(join(work, 'bkt-store-'));
    },
    build: (c, df, ctx) => build(c, df, ctx, ['-t', `bench/${c.name}:bkt`]),
    export: (c, df, ctx, dest) => build(c, df, ctx, ['-o', `type=oci,dest=${dest}`, '-t', `bench/${c.name}:bkt`]),
    async close() {
      if (root) await rm(root, { recursive: true, force: true });
    },
  };
}

async function dockerBuilder(work, registryHost) {
  const dataRoot = await mkdtemp(join(work, 'docker-data-'));
  const sock = join(work, 'docker.sock');
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
    build: (c, df, ctx) => docker('build', '--network', 'none', '-q', '-t', `bench/${c.name}:docker`, '-f', df, ctx),
    // dockerd 20.10's BuildKit has no oci exporter ("exporter \"oci\" could not be found"): the image, then `docker save`.
    async export(c, df, ctx, dest) {
      return (await docker('build', '--network', 'none', '-q', '-t', `bench/${c.name}:docker`, '-f', df, ctx)) + (await docker('save', '-o', dest, `bench/${c.name}:docker`));
    },
    async close() {
      await stop();
      await rm(dataRoot, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

async function buildahBuilder(work, registryHost) {
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
  const build = (c, df, ctx) =>
    buildah('bud', '--isolation', 'oci', '--layers', '--network', 'none', '--tls-verify=false', '-q', '-t', `bench/${c.name}:buildah`, '-f', df, ctx);
  return {
    name: `buildah`,
    note: `buildah (${driver})`,
    async reset() {
      await buildah('rmi', '--all', '--force');
    },
    build,
    async export(c, df, ctx, dest) {
      return (await build(c, df, ctx)) + (await buildah('push', `bench/${c.name}:buildah`, `oci-archive:${dest}`));
    },
    async close() {
      await run('umount', ['-R', join(root, driver)]).catch(() => undefined);
      await rm(root, { recursive: true, force: true }).catch(() => undefined);
      await rm(runroot, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-compare-'));
const registry = await testkit.startRegistry();
const builders = [];
const skipped = [];
try {
  const base = (await testkit.pushBusyboxImage(registry, 'busybox')).reference;
  builders.push(bktBuilder(work));
  if (args['skip-docker']) skipped.push('docker (--skip-docker)');
  else if (!installed('dockerd')) skipped.push('docker (dockerd not installed)');
  else builders.push(await dockerBuilder(work, registry.host));
  if (args['skip-buildah']) skipped.push('buildah (--skip-buildah)');
  else if (!installed('buildah')) skipped.push('buildah (not installed)');
  else builders.push(await buildahBuilder(work, registry.host));
  if (installed('buildkitd')) skipped.push('buildkitd (installed, not driven by this bench yet)');

  const only = args.only ? new Set(args.only.split(',')) : undefined;
  const selected = cases(base).filter((c) => !only || only.has(c.name));
  // One context per case, made once; each build works on its own copy.
  for (const c of selected) {
    c.dir = join(work, 'src', c.name);
    await mkdir(join(c.dir, 'context'), { recursive: true });
    if (c.context) await c.context(join(c.dir, 'context'));
    await writeFile(join(c.dir, 'Dockerfile'), c.dockerfile);
  }

  /** times[case][mode][builder] = ms[] */
  const times = {};
  /** Repetitions that failed, by "case builder". */
  const failures = {};
  for (let rep = 0; rep < RUNS; rep++) {
    for (const c of selected) {
      const caseModes = MODES.filter((m) => m !== 'changed' || c.changes);
      // The builders' order turns each repetition, so that no builder always runs right after the same other one: that
      // one's leftovers (dirty data being written back, which a build's fsyncs and syncfs wait for; its daemon's cleanup)
      // slow whoever follows.
      for (const b of builders.map((_, i) => builders[(i + rep) % builders.length])) {
        // One repetition of one builder: its modes in order. A failure redoes the whole repetition once (reported); a peer's second failure leaves the repetition out, bkt's ends the bench.
        const attempt = async () => {
          const dir = await mkdtemp(join(work, `${c.name}-${b.name}-`));
          try {
            const ctx = join(dir, 'context');
            await cp(join(c.dir, 'context'), ctx, { recursive: true, preserveTimestamps: true });
            const df = join(dir, 'Dockerfile');
            await writeFile(df, c.dockerfile);
            const got = {};
            if (caseModes.some((m) => m !== 'export')) {
              await b.reset();
              const cold = await b.build(c, df, ctx);
              if (caseModes.includes('cold')) got.cold = cold;
              if (caseModes.includes('warm')) got.warm = await b.build(c, df, ctx);
              if (caseModes.includes('changed')) {
                await writeFile(join(ctx, 'd7', 'f42.txt'), randomBytes(19_584).toString('base64'));
                got.changed = await b.build(c, df, ctx);
              }
            }
            if (caseModes.includes('export')) {
              await b.reset();
              got.export = await b.export(c, df, ctx, join(dir, 'image.tar'));
            }
            return got;
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        };
        let got;
        for (let tries = 1; !got && tries <= 2; tries++) {
          try {
            got = await attempt();
          } catch (err) {
            const msg = err.message.split('\n').filter(Boolean).slice(-2).join(' | ');
            process.stderr.write(`  rep ${rep + 1}/${RUNS} ${c.name} ${b.name} failed (${tries === 1 ? 'redone once' : 'skipped'}): ${msg}\n`);
            (failures[`${c.name} ${b.name}`] ??= []).push(rep + 1);
            // bkt failing twice is a bug to see, not a figure to leave out.
            if (tries === 2 && b.name === 'bkt') throw err;
          }
        }
        if (!got) continue;
        for (const [mode, ms] of Object.entries(got)) (((times[c.name] ??= {})[mode] ??= {})[b.name] ??= []).push(ms);
        process.stderr.write(`  rep ${rep + 1}/${RUNS} ${c.name.padEnd(11)} ${b.name.padEnd(7)} ${Object.entries(got).map(([m, ms]) => `${m} ${ms.toFixed(0)}`).join(', ')} ms\n`);
      }
    }
  }

  const peers = builders.slice(1).map((b) => b.name);
  const header = ['case', 'mode', 'bkt ms', ...peers.flatMap((p) => [`${p} ms`, `bkt/${p}`])];
  const table = [header];
  const summary = [];
  for (const c of selected) {
    for (const mode of MODES) {
      const t = times[c.name]?.[mode];
      if (!t) continue;
      const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
      if (m.bkt === undefined) continue;
      summary.push({ case: c.name, mode, medians: m, ratios: Object.fromEntries(peers.map((p) => [p, m.bkt / m[p]])) });
      table.push([
        c.name,
        mode,
        m.bkt.toFixed(0),
        ...peers.flatMap((p) => (m[p] === undefined ? ['—', '—'] : [m[p].toFixed(0), (m.bkt / m[p]).toFixed(2)])),
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  console.log(`\nmedians of ${RUNS} interleaved run(s); wall time of each client command; ratio = bkt / peer (lower is better for bkt)`);
  for (const b of builders) if (b.note) console.log(`${b.name}: ${b.note}`);
  for (const s of skipped) console.log(`skipped: ${s}`);
  for (const [k, reps] of Object.entries(failures)) console.log(`failed: ${k} in repetition(s) ${reps.join(', ')} (each redone once; a second failure leaves that repetition out)`);
  console.log('');
  for (const row of table) console.log(row.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  if (args.json) await writeFile(args.json, JSON.stringify({ runs: RUNS, builders: builders.map((b) => b.name), skipped, failures, summary, times }, null, 2));
} finally {
  for (const b of builders) await b.close().catch((err) => console.error(`closing ${b.name}: ${err.message}`));
  await registry.stop();
  await rm(work, { recursive: true, force: true }).catch(() => undefined);
}
