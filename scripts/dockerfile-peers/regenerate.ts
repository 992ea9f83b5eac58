/**
 * Regenerates `tests/e2e/dockerfile/cases/<case>/expected.json` by building
 * each case with a PEER (an independent Dockerfile builder), never with bkt.
 * Run by hand (see ./regenerate and tests/e2e/dockerfile/README.md), as root.
 *
 * Peers, tried in the order of $PEERS (default `buildkit,docker,buildah`),
 * each only when its binaries are there:
 *   buildkit  buildkitd + buildctl ($BUILDKITD / $BUILDCTL or on PATH), with its
 *             built-in `dockerfile.v0` frontend, OCI worker, host network
 *   docker    dockerd of Debian's docker.io (its BuildKit), on a private socket
 *   buildah   Debian's buildah, vfs storage, chroot isolation
 * The first peer that builds a case writes its expectation; the failures of
 * the peers before it are kept in `peerFailures`, for review. A case with a
 * `Dockerfile.peer` (same image, without a feature too new for the peers) is
 * built from that file. A case whose `case.json` has `error` records the
 * first peer's failure instead. case.json's `adjust` corrects the listing
 * where the peer predates current BuildKit (recorded as `adjusted`).
 *
 * Usage: regenerate [CASE-NAME-SUBSTRING…]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { CASES_DIR, loadCases, prepareCase, type Case, type PreparedCase } from '../../tests/e2e/dockerfile/lib/corpus.js';
import { startFixtures, type Fixtures } from '../../tests/e2e/dockerfile/lib/fixtures.js';
import { baseTree, configFields, registryImageConfig, registryImageToArchive, summarizeArchive, type Entry } from '../../tests/e2e/dockerfile/lib/image.js';

const execFileP = promisify(execFile);

async function sh(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}) {
  try {
    return await execFileP(cmd, args, {
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
      maxBuffer: 256 * 1024 * 1024,
      timeout: opts.timeoutMs ?? 600_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}\n${(e.stderr || e.stdout || e.message).trim().split('\n').slice(-25).join('\n')}`);
  }
}

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** A Dockerfile builder that is not bkt. */
interface Peer {
  name: string;
  version: string;
  /** Builds `file` and writes an image archive (OCI layout tar or docker archive) to `dest`. */
  build(p: PreparedCase, c: Case, file: string, dest: string): Promise<void>;
  /** Builds `file` and pushes it as `reference` to the test registry. */
  buildAndPush(p: PreparedCase, c: Case, file: string, reference: string): Promise<void>;
  stop(): Promise<void>;
}

async function startBuildkit(fx: Fixtures, work: string): Promise<Peer | undefined> {
  const buildkitd = process.env.BUILDKITD ?? which('buildkitd');
  const buildctl = process.env.BUILDCTL ?? which('buildctl');
  if (!buildkitd || !buildctl) return undefined;
  const dir = join(work, 'buildkit');
  await mkdir(dir, { recursive: true });
  const sock = join(dir, 'buildkitd.sock');
  const config = join(dir, 'buildkitd.toml');
  await writeFile(config, `[registry."${fx.registry.host}"]\n  http = true\n  insecure = true\n`);
  const daemon = spawn(
    buildkitd,
    ['--root', join(dir, 'root'), '--addr', `unix://${sock}`, '--config', config, '--oci-worker-net=host', '--oci-worker-gc=false'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  daemon.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-20_000)));
  const addr = ['--addr', `unix://${sock}`];
  try {
    await waitFor('buildkitd', async () => {
      if (daemon.exitCode !== null) throw new Error(`buildkitd exited: ${log}`);
      return sh(buildctl, [...addr, 'debug', 'workers']).then(() => true, () => false);
    });
  } catch (err) {
    await stopChild(daemon);
    throw err;
  }
  const version = (await sh(buildkitd, ['--version'])).stdout.trim().split(' ').slice(0, 3).join(' ');
  const common = (p: PreparedCase, c: Case, file: string) => {
    const args = ['build', '--progress', 'plain', '--frontend', 'dockerfile.v0'];
    args.push('--local', `context=${p.contextDir}`, '--local', `dockerfile=${p.root}`, '--opt', `filename=${relative(p.root, file)}`);
    for (const [k, v] of Object.entries(c.spec.args ?? {})) args.push('--opt', `build-arg:${k}=${v}`);
    if (c.spec.target) args.push('--opt', `target=${c.spec.target}`);
    for (const [name, d] of Object.entries(p.contexts)) args.push('--local', `ctx-${name}=${d}`, '--opt', `context:${name}=local:ctx-${name}`);
    for (const s of p.secrets) args.push('--secret', s.src ? `id=${s.id},src=${s.src}` : `id=${s.id},env=${s.env}`);
    for (const id of c.spec.ssh ?? []) args.push('--ssh', `${id}=${fx.sshAuthSock}`);
    return args;
  };
  return {
    name: 'buildkit',
    version: `${version} (buildkitd + buildctl, built-in dockerfile.v0 frontend)`,
    build: async (p, c, file, dest) => {
      await sh(buildctl, [...addr, ...common(p, c, file), '--output', `type=oci,dest=${dest}`], { env: p.env });
    },
    buildAndPush: async (p, c, file, reference) => {
      await sh(buildctl, [...addr, ...common(p, c, file), '--output', `type=image,name=${reference},push=true,registry.insecure=true`], { env: p.env });
    },
    stop: () => stopChild(daemon),
  };
}

async function startDocker(_fx: Fixtures, work: string): Promise<Peer | undefined> {
  const dockerd = which('dockerd');
  const docker = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : which('docker');
  if (!dockerd || !docker) return undefined;
  const dir = join(work, 'docker');
  await mkdir(dir, { recursive: true });
  const sock = join(dir, 'docker.sock');
  const daemon = spawn(
    dockerd,
    ['--bridge=none', '--iptables=false', '--ip6tables=false', '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
      '--pidfile', join(dir, 'docker.pid'), '-H', `unix://${sock}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  daemon.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-20_000)));
  const host = ['-H', `unix://${sock}`];
  try {
    await waitFor('dockerd', async () => {
      if (daemon.exitCode !== null) throw new Error(`dockerd exited: ${log}`);
      return sh(docker, [...host, 'version']).then(() => true, () => false);
    });
  } catch (err) {
    await stopChild(daemon);
    throw err;
  }
  const version = (await sh(docker, [...host, 'version', '--format', '{{.Server.Version}}'])).stdout.trim();
  let n = 0;
  const build = async (p: PreparedCase, c: Case, file: string, tag: string) => {
    if (Object.keys(p.contexts).length) throw new Error('docker build of this docker has no --build-context');
    const args = [...host, 'build', '--progress', 'plain', '--network', 'host', '-f', file, '-t', tag];
    for (const [k, v] of Object.entries(c.spec.args ?? {})) args.push('--build-arg', `${k}=${v}`);
    if (c.spec.target) args.push('--target', c.spec.target);
    for (const s of p.secrets) args.push('--secret', s.src ? `id=${s.id},src=${s.src}` : `id=${s.id},env=${s.env}`);
    for (const id of c.spec.ssh ?? []) args.push('--ssh', `${id}=${_fx.sshAuthSock}`);
    args.push(p.contextDir);
    await sh(docker, args, { env: { ...p.env, DOCKER_BUILDKIT: '1' } });
  };
  return {
    name: 'docker',
    version: `docker ${version} (dockerd's BuildKit, built-in Dockerfile frontend)`,
    build: async (p, c, file, dest) => {
      const tag = `corpus/image-${++n}:latest`;
      await build(p, c, file, tag);
      await sh(docker, [...host, 'save', '-o', dest, tag]);
    },
    buildAndPush: async (p, c, file, reference) => {
      await build(p, c, file, reference);
      await sh(docker, [...host, 'push', reference]);
    },
    stop: () => stopChild(daemon),
  };
}

async function startBuildah(fx: Fixtures, work: string): Promise<Peer | undefined> {
  const buildah = which('buildah');
  if (!buildah) return undefined;
  const dir = join(work, 'buildah');
  await mkdir(dir, { recursive: true });
  const store = ['--storage-driver', 'vfs', '--root', join(dir, 'root'), '--runroot', join(dir, 'runroot')];
  const version = (await sh(buildah, ['--version'])).stdout.trim().split(' ').slice(0, 3).join(' ');
  let n = 0;
  const build = async (p: PreparedCase, c: Case, file: string, tag: string) => {
    const args = [...store, 'bud', '--isolation', 'chroot', '--format', 'docker', '--tls-verify=false', '--network', 'host', '-f', file, '-t', tag];
    for (const [k, v] of Object.entries(c.spec.args ?? {})) args.push('--build-arg', `${k}=${v}`);
    if (c.spec.target) args.push('--target', c.spec.target);
    if (Object.keys(p.contexts).length) throw new Error('buildah of this version has no --build-context');
    for (const s of p.secrets) args.push('--secret', s.src ? `id=${s.id},src=${s.src}` : `id=${s.id},env=${s.env}`);
    for (const id of c.spec.ssh ?? []) args.push('--ssh', `${id}=${fx.sshAuthSock}`);
    args.push(p.contextDir);
    await sh(buildah, args, { env: p.env });
  };
  return {
    name: 'buildah',
    version,
    build: async (p, c, file, dest) => {
      const tag = `localhost/corpus/image-${++n}:latest`;
      await build(p, c, file, tag);
      await sh(buildah, [...store, 'push', tag, `docker-archive:${dest}:${tag}`]);
    },
    buildAndPush: async (p, c, file, reference) => {
      await build(p, c, file, reference);
      await sh(buildah, [...store, 'push', '--tls-verify=false', reference, `docker://${reference}`]);
    },
    stop: async () => {
      await sh(buildah, [...store, 'rm', '--all']).catch(() => undefined);
    },
  };
}

const STARTERS: Record<string, (fx: Fixtures, work: string) => Promise<Peer | undefined>> = {
  buildkit: startBuildkit,
  docker: startDocker,
  buildah: startBuildah,
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('regenerate runs as root (the peers unpack images with their owners)');
  const filters = process.argv.slice(2);
  const all = await loadCases();
  const cases = filters.length ? all.filter((c) => filters.some((f) => c.name.includes(f))) : all;
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'bkt-corpus-peers-'));
  const fx = await startFixtures(CASES_DIR, all);
  const peers: Peer[] = [];
  try {
    for (const name of (process.env.PEERS ?? 'buildkit,docker,buildah').split(',').filter(Boolean)) {
      const starter = STARTERS[name];
      if (!starter) throw new Error(`unknown peer ${name} (known: ${Object.keys(STARTERS).join(', ')})`);
      try {
        const peer = await starter(fx, work);
        if (peer) {
          peers.push(peer);
          console.log(`peer ${peer.name}: ${peer.version}`);
        } else console.log(`peer ${name}: not installed, skipped`);
      } catch (err) {
        console.log(`peer ${name}: failed to start: ${(err as Error).message}`);
      }
    }
    if (!peers.length) throw new Error('no peer available');

    const baseArchive = join(work, 'base.tar');
    await registryImageToArchive(fx.base.reference, baseArchive);
    const base = await baseTree(baseArchive);
    if (base.diffId !== fx.base.diffId) throw new Error(`base diff id ${base.diffId} is not the pushed ${fx.base.diffId}`);

    const summary: string[] = [];
    for (const c of cases) {
      const t0 = Date.now();
      const result = await regenerateCase(c, peers, fx, base, work);
      const line = `${c.name}: ${result} (${((Date.now() - t0) / 1000).toFixed(1)}s)`;
      summary.push(line);
      console.log(line);
    }
    console.log(`\n${summary.join('\n')}\n\nregenerated ${cases.length} cases in ${((Date.now() - started) / 1000).toFixed(0)}s`);
  } finally {
    for (const p of peers) await p.stop().catch((err) => console.error(`stopping ${p.name}: ${(err as Error).message}`));
    await fx.stop();
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function regenerateCase(c: Case, peers: Peer[], fx: Fixtures, base: { tree: Entry[]; diffId: string }, work: string): Promise<string> {
  const failures: string[] = [];
  const file = c.peerDockerfile ?? c.spec.dockerfile ?? 'Dockerfile';
  for (const peer of peers) {
    const dir = await mkdtemp(join(work, `${c.name}-`));
    try {
      const placeholders = fx.placeholders(c);
      if (c.spec.parent) placeholders.parent = `${fx.registry.host}/corpus/${c.name}-parent:${peer.name}`;
      const p = await prepareCase(c, join(dir, 'case'), placeholders, { dockerfile: file });
      let parentConfig: Record<string, unknown> | undefined;
      if (c.spec.parent) {
        await peer.buildAndPush(p, c, p.parentDockerfile!, placeholders.parent!);
        parentConfig = configFields(await registryImageConfig(fx.registry.host, placeholders.parent!.slice(fx.registry.host.length + 1)));
      }
      const archive = join(dir, 'image.tar');
      let buildError: Error | undefined;
      try {
        await peer.build(p, c, p.dockerfile, archive);
      } catch (err) {
        buildError = err as Error;
      }
      const header = {
        peer: `${peer.version}${c.peerDockerfile ? `, building ${c.peerDockerfile} (the same image without a feature this peer predates)` : ''}`,
        ...(failures.length ? { peerFailures: failures } : {}),
      };
      if (c.spec.error) {
        if (!buildError) throw new Error('the build succeeded, but case.json expects an error');
        const message = buildError.message.split('\n').filter((l) => /error|ERROR|failed/.test(l)).slice(-3).join('\n');
        await writeExpected(c, { ...header, error: message });
        return `error, ${peer.name}`;
      }
      if (buildError) throw buildError;
      const s = await summarizeArchive(archive, { base, paths: c.spec.paths, ignore: c.spec.ignore, forbidden: c.spec.forbidden });
      if (s.forbiddenFound.length) throw new Error(`forbidden content in the image: ${s.forbiddenFound.join(', ')}`);
      const adjusted = applyAdjustments(c, s.files);
      await writeExpected(c, {
        ...header,
        ...(adjusted.length ? { adjusted } : {}),
        config: s.config,
        ...(parentConfig ? { parentConfig } : {}),
        files: s.files,
        removed: s.removed,
      });
      return `ok, ${peer.name}${c.peerDockerfile ? ` (${c.peerDockerfile})` : ''}, ${s.files.length} entries`;
    } catch (err) {
      failures.push(`${peer.version}: ${(err as Error).message.split('\n').slice(-6).join(' | ')}`);
    } finally {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
  console.log(`  ${c.name}: no peer built it:\n    ${failures.join('\n    ')}`);
  return 'NO PEER (expected.json left as it was)';
}

/**
 * Applies case.json's `adjust` (where the peer's version predates a behaviour
 * current BuildKit has, each with its reason) to the peer's listing; returns
 * what changed, recorded in expected.json as `adjusted`.
 */
function applyAdjustments(c: Case, files: Entry[]): string[] {
  const out: string[] = [];
  for (const a of c.spec.adjust ?? []) {
    const e = files.find((f) => f.path === a.path);
    if (!e) throw new Error(`case.json adjust: ${a.path} is not in the peer's listing`);
    if (a.mode === undefined || e.mode === a.mode) throw new Error(`case.json adjust: ${a.path} already has mode ${e.mode}`);
    out.push(`${a.path}: mode ${e.mode} -> ${a.mode} (${a.reason})`);
    e.mode = a.mode;
  }
  return out;
}

async function writeExpected(c: Case, data: Record<string, unknown>): Promise<void> {
  await writeFile(join(c.dir, 'expected.json'), `${JSON.stringify(data, null, 2)}\n`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
