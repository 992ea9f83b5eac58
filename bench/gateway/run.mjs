#!/usr/bin/env node
/**
 * bench/gateway: a Dockerfile whose `# syntax=` names a frontend image (the
 * e2e tests' frontend: a Node program speaking LLBBridge over its stdio, in
 * an image of the host's node binary and its libraries), built by bkt and by
 * dockerd's BuildKit in the same run, cold and warm, printed as wall times
 * and ratios (bkt / docker; lower is better for bkt).
 *
 * cold: no build cache and no frontend image (bkt: a fresh --root; dockerd:
 * `docker builder prune -af` and `docker image prune -af`), so the frontend
 * image is pulled from the local registry; warm: the same build again at
 * once (the frontend still runs: its result is what it returns). Both export
 * the result to a local directory (`-o type=local`), which is checked.
 *
 * dockerd is started on a private socket and data root with
 * --insecure-registry for the local registry, and stopped by PID at the end.
 * Run by hand as root, after `npm run build`:
 *   node bench/gateway/run.mjs [--runs 3] [--skip-docker]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
let testkit;
let esbuild;
try {
  testkit = await import('@bkt/testkit');
  esbuild = await import('esbuild');
} catch (err) {
  console.error(`bench/gateway needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const BKT = join(REPO, 'packages/cli/bin/bkt.js');
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '3' }, 'skip-docker': { type: 'boolean', default: false } } });
const RUNS = Math.max(1, Number(args.runs));

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

/** The e2e tests' image helpers (TypeScript), bundled next to them for this process. */
async function frontendLib() {
  const out = join(REPO, 'tests/e2e/gateway', `.bench-lib-${process.pid}.mjs`);
  await esbuild.build({ entryPoints: [join(REPO, 'tests/e2e/gateway/lib.ts')], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile: out, logLevel: 'silent' });
  try {
    return await import(pathToFileURL(out).href);
  } finally {
    await rm(out, { force: true });
  }
}

function bktBuilder(work) {
  let root;
  return {
    name: 'bkt',
    async reset() {
      if (root) await rm(root, { recursive: true, force: true });
      root = await mkdtemp(join(work, 'bkt-store-'));
    },
    build: (ctx, out) => run('node', [BKT, 'build', '--root', root, '--progress', 'quiet', '-o', `type=local,dest=${out}`, ctx]),
    async close() {
      if (root) await rm(root, { recursive: true, force: true });
    },
  };
}

async function dockerBuilder(work, registryHost) {
  const dataRoot = await mkdtemp(join(work, 'docker-data-'));
  const sock = join(dataRoot, 'docker.sock');
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
    build: (ctx, out) => docker('build', '-q', '-o', `type=local,dest=${out}`, ctx),
    async close() {
      await stop();
      await rm(dataRoot, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-gateway-'));
const registry = await testkit.startRegistry();
const builders = [];
try {
  const lib = await frontendLib();
  const frontend = await lib.pushFrontendImage(registry.host, 'bench/frontend', '1');
  builders.push(bktBuilder(work));
  if (!args['skip-docker']) builders.push(await dockerBuilder(work, registry.host));
  const times = { cold: {}, warm: {} };
  for (const b of builders) {
    for (let i = 0; i < RUNS; i++) {
      const ctx = await mkdtemp(join(work, 'ctx-'));
      await writeFile(join(ctx, 'message.txt'), 'hello from the bench\n');
      await writeFile(join(ctx, 'Dockerfile'), `# syntax=${frontend.reference}\nFROM scratch\n`);
      await b.reset();
      for (const phase of ['cold', 'warm']) {
        const out = join(work, `out-${b.name}-${i}-${phase}`);
        await mkdir(out);
        const ms = await b.build(ctx, out);
        const greeting = await readFile(join(out, 'greeting.txt'), 'utf8');
        if (greeting !== 'frontend says: HELLO FROM THE BENCH\n') throw new Error(`${b.name} ${phase}: unexpected greeting.txt ${JSON.stringify(greeting)}`);
        times[phase][b.name] = Math.min(times[phase][b.name] ?? Infinity, ms);
        await rm(out, { recursive: true, force: true });
      }
      await rm(ctx, { recursive: true, force: true });
    }
    process.stderr.write(`  ${b.name}: cold ${times.cold[b.name].toFixed(0)} ms, warm ${times.warm[b.name].toFixed(0)} ms\n`);
  }
  console.log(`\n# syntax= frontend image build, best of ${RUNS} run(s); wall time of each client command; ratio = bkt / docker (lower is better for bkt)\n`);
  console.log(['phase', 'bkt ms', ...(builders[1] ? ['docker ms', 'bkt/docker'] : [])].join('  '));
  for (const phase of ['cold', 'warm']) {
    const t = times[phase];
    console.log([phase.padEnd(5), t.bkt.toFixed(0).padStart(6), ...(t.docker !== undefined ? [t.docker.toFixed(0).padStart(9), (t.bkt / t.docker).toFixed(2).padStart(10)] : [])].join('  '));
  }
} finally {
  for (const b of builders) await b.close().catch((err) => console.error(`closing ${b.name}: ${err.message}`));
  await registry.stop();
  await rm(work, { recursive: true, force: true }).catch(() => undefined);
}
