#!/usr/bin/env node
/**
 * bench/daemon: rebuilds through bktd against dockerd's BuildKit (and
 * buildkitd where it is installed), in the same run, as wall times and
 * ratios (bkt / peer; lower is better for bkt; goals: warm ≤ 0.5×,
 * incremental ≤ 0.8×):
 *
 *   warm         the same Dockerfile build again, nothing changed (a no-op rebuild)
 *   incremental  the build again after one file of the context changed
 *
 * The Dockerfile is `FROM busybox` + `COPY . /ctx` over a 2,000-file
 * context (20 directories of 100 files), tagged as an image in each
 * builder's own store. Repetitions are interleaved across the builders
 * (warm rep 1 of each, then rep 2, …), so a noisy moment hits all alike.
 * Each time is the wall time of one client process. bktd is measured with
 * two clients, each over its own copy of the context:
 *
 *   bkt build --addr  the CLI a user runs (`bkt build --addr unix://… -q -t …`,
 *                     packages/cli/bin/bkt.js): a session, Solve, Status
 *   session client    `tests/e2e/daemon/session-client.mjs`: a node process
 *                     opening a session and sending one Solve with an
 *                     `image` exporter (no Status); its own figure (from its
 *                     start to the Solve's answer, node's start-up excluded)
 *                     is printed too
 *
 * and dockerd with `docker build -q -t …` (DOCKER_BUILDKIT=1).
 *
 * Beside the wall times, the CPU time of each build: the client process's
 * (user + system, through /usr/bin/time) plus what the daemon's process
 * tree used meanwhile (/proc/PID/stat of the daemon and its descendants:
 * bktd and its runc children; dockerd, its containerd and theirs) — on a
 * machine others load, the figure wall times blur.
 *
 * Then 20 client processes solve at once on bktd (shared first steps, a
 * last step of their own) and the daemon's peak RSS (VmHWM) is printed.
 *
 * The base image is Debian's busybox-static (@bkt/testkit) pushed to a
 * docker-registry on 127.0.0.1: bktd pulls it from there; dockerd gets the
 * same image with `docker load` (a docker-archive written by skopeo), so
 * its builds never ask the registry. dockerd is started by this script
 * (`--bridge=none --iptables=false`, a temp data root, a private socket)
 * and stopped by PID at the end; so is bktd (a temp root).
 *
 * Run by hand as root, after `npm run build`:
 *   node bench/daemon/run.mjs [--runs 5] [--files 2000] [--clients 20] [--skip-docker]
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

let testkit;
try {
  testkit = await import('@bkt/testkit');
} catch (err) {
  console.error(`bench/daemon needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const BKTD = fileURLToPath(new URL('../../packages/server/bin/bktd.js', import.meta.url));
const CLIENT = fileURLToPath(new URL('../../tests/e2e/daemon/session-client.mjs', import.meta.url));
const BKT = fileURLToPath(new URL('../../packages/cli/bin/bkt.js', import.meta.url));
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    files: { type: 'string', default: '2000' },
    clients: { type: 'string', default: '20' },
    'skip-docker': { type: 'boolean', default: false },
  },
});
const RUNS = Math.max(1, Number(args.runs));
const FILES = Number(args.files);
const CLIENTS = Number(args.clients);

if (process.getuid?.() !== 0) {
  console.error('bench/daemon runs containers and dockerd: run it as root.');
  process.exit(1);
}

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const CLK_TCK = 100;
let timed = 0;

/**
 * CPU ms used so far by process `pid` and its descendants: their user and
 * system times, and those of the children they reaped (/proc/PID/stat).
 */
function treeCpuMs(pid) {
  let ticks = 0;
  const visit = (p) => {
    let stat;
    try {
      stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    } catch {
      return; // gone meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime: fields 14-17, 12-15 after the command name.
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    let children = '';
    try {
      children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      return;
    }
    for (const c of children.trim().split(/\s+/).filter(Boolean)) visit(c);
  };
  visit(pid);
  return (ticks * 1000) / CLK_TCK;
}

/**
 * Runs a command; resolves with its wall time in ms, its CPU time in ms
 * (user + system, through /usr/bin/time; null without it) and its stdout,
 * rejects with its output on failure.
 */
function run(cmd, argv, opts = {}) {
  const cpuFile = TIME ? join(work, `time-${++timed}`) : undefined;
  if (cpuFile) [cmd, argv] = [TIME, ['-f', '%U %S', '-o', cpuFile, cmd, ...argv]];
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    let stdout = '';
    p.stdout.on('data', (c) => {
      out += c;
      stdout += c;
    });
    p.stderr.on('data', (c) => (out += c));
    p.on('error', reject);
    p.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      let cpu = null;
      if (cpuFile) {
        const t = readFileSync(cpuFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
        if (t.length === 2 && t.every(Number.isFinite)) cpu = (t[0] + t[1]) * 1000;
        rmSync(cpuFile, { force: true });
      }
      if (code === 0) resolve({ ms, cpu, stdout });
      else reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}:\n${out.split('\n').slice(-25).join('\n')}`));
    });
  });
}

/** Starts a long-running process; `stop()` sends SIGTERM to its PID (SIGKILL after 20 s). */
function daemon(cmd, argv, ready) {
  const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onData = (c) => (log = (log + c).slice(-8000));
  p.stdout.on('data', onData);
  p.stderr.on('data', onData);
  const stop = async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };
  return { proc: p, stop, log: () => log, ready: ready(() => log, p) };
}

// ---------------------------------------------------------------------------
// The context.

/**
 * A context of FILES files whose content names its builder: two builders'
 * contexts never share content, so that no builder's sync is ever a cache
 * hit on another's (a real context is nobody else's).
 */
async function makeContext(dir, builder) {
  const old = new Date(Date.now() - 3600_000);
  for (let d = 0; d < Math.ceil(FILES / 100); d++) {
    await mkdir(join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < Math.min(100, FILES - d * 100); f++) {
      const file = join(dir, `d${d}`, `f${f}.txt`);
      await writeFile(file, `file ${d}/${f} of ${builder}\n`.repeat(20));
      // Edited an hour ago, as most of a real context is.
      await utimes(file, old, old);
    }
  }
}

const changes = new Map();
/** Changes one file of the context (its content and size). */
async function changeOneFile(dir) {
  changes.set(dir, (changes.get(dir) ?? 0) + 1);
  const d = Math.min(7, Math.ceil(FILES / 100) - 1);
  await writeFile(join(dir, `d${d}`, `f${Math.min(42, FILES - d * 100 - 1)}.txt`), `changed ${changes.get(dir)} ${Date.now()}\n`);
}

// ---------------------------------------------------------------------------
// The builders: build(ctx, dockerfileDir) → { ms, cpu } (or null: not measured).

/**
 * `r` (a client process's run) as a measurement: its wall time, and the CPU
 * time of the build — the client's plus what the daemon's process tree used
 * meanwhile (`before`: `treeCpuMs(pid)` when the client started).
 */
function measurement(r, pid, before) {
  const daemonCpu = treeCpuMs(pid) - before;
  return { ms: r.ms, cpu: r.cpu === null ? null : r.cpu + daemonCpu, clientCpu: r.cpu, daemonCpu };
}

async function bktdBuilder(work, clients) {
  const root = await mkdtemp(join(work, 'bktd-root-'));
  const socket = join(work, 'bktd.sock');
  const d = daemon('node', [BKTD, '--addr', `unix://${socket}`, '--root', root], (log, p) =>
    new Promise((resolve, reject) => {
      const t = setInterval(() => {
        if (/listening on/.test(log())) {
          clearInterval(t);
          resolve();
        } else if (p.exitCode !== null) {
          clearInterval(t);
          reject(new Error(`bktd exited:\n${log()}`));
        }
      }, 50);
    }),
  );
  await d.ready;
  let specs = 0;
  /** One client process; its wall time, and its own figure (start to answer). */
  const client = async (spec) => {
    const file = join(work, `spec-${++specs}.json`);
    await writeFile(file, JSON.stringify({ address: `unix://${socket}`, ...spec }));
    const before = treeCpuMs(d.proc.pid);
    const r = await run('node', [CLIENT, file]);
    const done = JSON.parse(r.stdout.trim().split('\n').at(-1));
    if (!done.ok) throw new Error(`bktd build failed: ${done.details}`);
    clients.push(done.ms);
    return measurement(r, d.proc.pid, before);
  };
  return {
    name: 'session client',
    pid: d.proc.pid,
    socket,
    build: (ctx, dfDir) =>
      client({
        sharedKey: 'bench-daemon-context',
        localDirs: { context: ctx, dockerfile: dfDir },
        frontend: 'dockerfile.v0',
        frontendAttrs: { filename: 'Dockerfile' },
        exporters: [{ Type: 'image', Attrs: { name: 'bench/daemon:bktd' } }],
      }),
    client,
    async close() {
      await d.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** `bkt build --addr` against the same bktd: the CLI a user runs, from a directory with no project config. */
function cliBuilder(bktd, work) {
  return {
    name: 'bkt build --addr',
    build: async (ctx, dfDir) => {
      const before = treeCpuMs(bktd.pid);
      const r = await run('node', [BKT, 'build', '--addr', `unix://${bktd.socket}`, '-q', '-t', 'bench/daemon:cli', '-f', join(dfDir, 'Dockerfile'), ctx], { cwd: work, env: { ...process.env, BKT_HOST: '' } });
      return measurement(r, bktd.pid, before);
    },
    close: async () => undefined,
  };
}

async function dockerBuilder(work, registryHost, base) {
  const dataRoot = await mkdtemp(join(work, 'docker-data-'));
  const sock = join(work, 'docker.sock');
  const host = `unix://${sock}`;
  const d = daemon(
    'dockerd',
    ['--bridge=none', '--iptables=false', '--ip6tables=false', '--data-root', dataRoot, '--exec-root', join(dataRoot, 'exec'), '--pidfile', join(dataRoot, 'docker.pid'), '-H', host],
    () => Promise.resolve(),
  );
  const env = { ...process.env, DOCKER_BUILDKIT: '1', DOCKER_HOST: host };
  const docker = (...a) => run(DOCKER, a, { env });
  for (let i = 0; ; i++) {
    try {
      await docker('version');
      break;
    } catch (err) {
      if (i > 60 || d.proc.exitCode !== null) {
        await d.stop();
        throw new Error(`dockerd did not start: ${err.message}\n${d.log()}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  // The same base image, loaded: dockerd's builds never ask the registry for it.
  const archive = join(work, 'busybox.tar');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${base}`, `docker-archive:${archive}:${base}`]);
  await docker('load', '-i', archive);
  return {
    name: 'dockerd BuildKit',
    // A failed build (seen on a busy machine: a file of BuildKit's own overlay mount gone mid-copy) is redone,
    // at most four times, and said; one that never succeeds counts as no measurement (null), and is said.
    build: async (ctx, dfDir) => {
      for (let attempt = 1; ; attempt++) {
        try {
          const before = treeCpuMs(d.proc.pid);
          return measurement(await docker('build', '-q', '-t', 'bench/daemon:docker', '-f', join(dfDir, 'Dockerfile'), ctx), d.proc.pid, before);
        } catch (err) {
          const why = err.message.split('\n').filter((l) => /ERROR|error/.test(l))[0] ?? '';
          if (attempt === 5) {
            process.stderr.write(`  dockerd BuildKit: a build failed 5 times, not measured: ${why}\n`);
            return null;
          }
          process.stderr.write(`  dockerd BuildKit: a build failed, redone: ${why}\n`);
        }
      }
    },
    async close() {
      await d.stop();
      await run('umount', ['-R', dataRoot]).catch(() => undefined);
      await rm(dataRoot, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------

const median = (xs) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
const best = (xs) => (xs.length === 0 ? NaN : Math.min(...xs));

/**
 * Each builder's cold build, then RUNS warm no-op rebuilds, then RUNS
 * one-file-changed rebuilds; repetitions interleaved across the builders
 * (rep 1 of every builder, then rep 2, …) so that a noisy moment of the
 * machine hits every builder alike. ms lists by builder name.
 */
async function measureAll(builders, work) {
  const state = [];
  for (const builder of builders) {
    const ctx = await mkdtemp(join(work, `ctx-${builder.name.replace(/\W+/g, '-')}-`));
    await makeContext(ctx, builder.name);
    const dfDir = await mkdtemp(join(work, 'df-'));
    await writeFile(join(dfDir, 'Dockerfile'), `FROM ${baseRef}\nCOPY . /ctx\n`);
    state.push({ builder, ctx, dfDir, cold: await builder.build(ctx, dfDir), warm: [], incremental: [] });
  }
  for (let i = 0; i < RUNS; i++) for (const s of state) s.warm.push(await s.builder.build(s.ctx, s.dfDir));
  for (let i = 0; i < RUNS; i++) {
    for (const s of state) {
      await changeOneFile(s.ctx);
      s.incremental.push(await s.builder.build(s.ctx, s.dfDir));
    }
  }
  const results = {};
  const shown = (xs) => xs.map((x) => (x === null ? 'failed' : `${x.ms.toFixed(0)}${x.cpu === null ? '' : `/${x.clientCpu.toFixed(0)}+${x.daemonCpu.toFixed(0)}`}`)).join(' ');
  for (const { builder, cold, warm, incremental } of state) {
    process.stderr.write(`  ${builder.name} (wall/client CPU+daemon CPU, ms): cold ${shown([cold])}; warm ${shown(warm)}; incremental ${shown(incremental)}\n`);
    // Builds that never succeeded are left out of the figures.
    const ok = (xs) => xs.filter((x) => x !== null);
    results[builder.name] = {
      cold,
      warm: ok(warm).map((x) => x.ms),
      incremental: ok(incremental).map((x) => x.ms),
      cpu: { warm: ok(warm).flatMap((x) => (x.cpu === null ? [] : [x.cpu])), incremental: ok(incremental).flatMap((x) => (x.cpu === null ? [] : [x.cpu])) },
    };
  }
  return results;
}

/** CLIENTS client processes at once (shared first steps, a last step each); the daemon's RSS while they run and its peak. */
async function concurrent(bktd, work) {
  const status = () => readFileSync(`/proc/${bktd.pid}/status`, 'utf8');
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status())[1]);
  const before = kb('VmRSS');
  let sampled = 0;
  const sampler = setInterval(() => (sampled = Math.max(sampled, kb('VmRSS'))), 50);
  const started = Date.now();
  try {
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        const dir = await mkdtemp(join(work, 'concurrent-'));
        await writeFile(join(dir, 'Dockerfile'), `FROM ${baseRef}\nRUN echo shared > /shared && sleep 1\nRUN echo client ${i} > /mine\n`);
        await bktd.client({ localDirs: { context: dir, dockerfile: dir }, frontend: 'dockerfile.v0', frontendAttrs: { filename: 'Dockerfile' }, exporters: [{ Type: 'image', Attrs: { name: `bench/concurrent:${i}` } }] });
      }),
    );
  } finally {
    clearInterval(sampler);
  }
  return { wall: Date.now() - started, before, sampled, peak: kb('VmHWM') };
}

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-daemon-'));
const registry = await testkit.startRegistry();
const builders = [];
let baseRef;
try {
  baseRef = (await testkit.pushBusyboxImage(registry, 'busybox')).reference;
  const clientMs = [];
  const bktd = await bktdBuilder(work, clientMs);
  builders.push(Object.assign(cliBuilder(bktd, work), { bkt: true }), Object.assign(bktd, { bkt: true }));
  if (!args['skip-docker']) builders.push(await dockerBuilder(work, registry.host, baseRef));
  const buildkitd = await run('sh', ['-c', 'command -v buildkitd']).then(
    (r) => r.stdout.trim(),
    () => undefined,
  );

  const results = await measureAll(builders, work);

  console.log(`\n${FILES}-file context, Dockerfile FROM busybox + COPY . /ctx; wall time of each client process (ms);`);
  console.log(`best and median of ${RUNS} run(s); ratio = bkt / peer on the median (lower is better for bkt; goals: warm ≤ 0.5, incremental ≤ 0.8)\n`);
  const mine = builders.filter((b) => b.bkt).map((b) => b.name);
  const peers = builders.filter((b) => !b.bkt).map((b) => b.name);
  const header = ['phase', 'bktd client', 'best', 'median', ...peers.flatMap((p) => [`${p} best`, 'median', 'ratio'])];
  const rows = [header];
  for (const phase of ['warm', 'incremental']) {
    for (const m of mine) {
      const xs = results[m][phase];
      rows.push([phase, m, best(xs).toFixed(0), median(xs).toFixed(0), ...peers.flatMap((p) => [best(results[p][phase]).toFixed(0), median(results[p][phase]).toFixed(0), (median(xs) / median(results[p][phase])).toFixed(2)])]);
    }
  }
  const print = (rows) => {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) console.log(r.map((c, i) => (i <= 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  };
  print(rows);
  // CPU time per build (client process + the daemon's process tree meanwhile): what a loaded machine's wall times hide.
  if (TIME) {
    console.log(`\nCPU time of each build (ms): the client process's user + system time and the daemon's process tree's meanwhile (/proc); median of ${RUNS}; ratio = bkt / peer\n`);
    const cpuRows = [['phase', 'bktd client', 'CPU median', ...peers.flatMap((p) => [`${p} CPU median`, 'ratio'])]];
    for (const phase of ['warm', 'incremental']) {
      for (const m of mine) {
        const xs = results[m].cpu[phase];
        cpuRows.push([phase, m, median(xs).toFixed(0), ...peers.flatMap((p) => [median(results[p].cpu[phase]).toFixed(0), (median(xs) / median(results[p].cpu[phase])).toFixed(2)])]);
      }
    }
    print(cpuRows);
  }
  const c = clientMs;
  console.log(`\nThe session client, from its start to the Solve's answer (node's start-up excluded): cold ${c[0]} ms, warm median ${median(c.slice(1, 1 + RUNS))} ms, incremental median ${median(c.slice(1 + RUNS))} ms`);
  console.log(buildkitd ? `buildkitd at ${buildkitd}: not measured by this script yet` : 'buildkitd: not installed here (the peer is dockerd\'s BuildKit)');
  console.log(`load: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);

  const conc = await concurrent(bktd, work);
  console.log(
    `\n${CLIENTS} concurrent client processes on bktd: all done in ${conc.wall} ms; bktd RSS ${(conc.before / 1024).toFixed(0)} MB before, ${(conc.sampled / 1024).toFixed(0)} MB at most while they ran (sampled every 50 ms), peak since start (VmHWM) ${(conc.peak / 1024).toFixed(0)} MB`,
  );
} finally {
  for (const b of builders) await b.close().catch((err) => console.error(`closing ${b.name}: ${err.message}`));
  await registry.stop();
  await rm(work, { recursive: true, force: true }).catch(() => undefined);
}
