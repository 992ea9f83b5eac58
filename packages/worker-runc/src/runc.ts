/**
 * The runc implementation of `Executor`.
 *
 * Layout under `stateDir` (the worker's directory in the store root):
 * `state/` is runc's `--root` (so `runc --root <stateDir>/state list` shows
 * only our containers), `bundles/<id>/` holds a container's config.json,
 * generated /etc/hosts and /etc/resolv.conf and runc's log; it is removed when
 * the container is. A sensitive bundle (secret env in config.json) lives on a
 * tmpfs mounted for the container's lifetime.
 *
 * Container ids carry the pid of the process that runs them,
 * `<name>-<pid>-<rest>`: a watchdog (watchdog.ts) stops this process's
 * containers and removes their bundles and scratch dirs within seconds of
 * its death, and `sweepStale` removes what a process whose watchdog died too
 * left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BktError } from '@bkt/core';
import type { ContainerSpec, Executor, ProcessControl, ProcessIO, ProcessSpec, RunIO } from './executor.js';
import { NetworkProvider, type NetworkOptions } from './network.js';
import { rootPath } from './rootpath.js';
import { RootNamespace } from './rootns.js';
import { DEFAULT_CAPABILITIES, DEFAULT_PATH, DEFAULT_PIDS_LIMIT, buildSpec, privilegedCapabilities } from './spec.js';
import { isAlive, mountTmpfs, mountsUnder, mustRun, runCommand, unmount } from './sys.js';
import { resolveUser, type ResolvedUser } from './user.js';
import { ContainerWatchdog } from './watchdog.js';

export interface RuncExecutorOptions {
  /** The worker's directory (runc state, bundles). Created when missing. */
  stateDir: string;
  /** The runc binary (default `runc` on PATH). */
  runc?: string;
  network?: NetworkOptions;
  /** Each container's `pids.max` (default `DEFAULT_PIDS_LIMIT`, 4096); 0: no limit of its own. */
  pidsLimit?: number;
  /**
   * A directory of per-container scratch dirs named by container id (the
   * exec op's secret tmpfs, ssh sockets): those of a dead process are
   * unmounted and removed with its containers.
   */
  runDirs?: string;
}

/** BuildKit's default container hostname. */
export const DEFAULT_HOSTNAME = 'buildkitsandbox';

interface RunningContainer {
  spec: ContainerSpec;
  bundle: string;
  capabilities: string[];
  execCount: number;
  /** The container's root as this process sees it (a namespace's root with `rootfsMount`): execs resolve users there. */
  root: string;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** The pid in a container id `<name>-<pid>-<rest>`; null when the id has another form. */
export function ownerPid(id: string): number | null {
  const m = /^[A-Za-z0-9_.]+-(\d+)-[A-Za-z0-9_.-]+$/.exec(id);
  return m ? Number(m[1]) : null;
}

export class RuncExecutor implements Executor {
  readonly stateDir: string;
  readonly runcRoot: string;
  readonly #runc: string;
  readonly #network: NetworkProvider;
  readonly #pidsLimit: number;
  readonly #runDirs: string | undefined;
  readonly #watchdog: ContainerWatchdog;
  readonly #running = new Map<string, RunningContainer>();
  readonly #pending = new Set<Promise<void>>();
  /** A root namespace process spawned ahead of need (see `#rootNamespace`). */
  #spareRoot: RootNamespace | undefined;
  #closed = false;

  constructor(opts: RuncExecutorOptions) {
    this.stateDir = opts.stateDir;
    this.runcRoot = join(opts.stateDir, 'state');
    this.#runc = opts.runc ?? 'runc';
    this.#network = new NetworkProvider(opts.network);
    this.#pidsLimit = opts.pidsLimit ?? DEFAULT_PIDS_LIMIT;
    this.#runDirs = opts.runDirs;
    const dirs = [join(this.stateDir, 'bundles'), ...(opts.runDirs ? [opts.runDirs] : [])];
    this.#watchdog = new ContainerWatchdog({ runc: this.#runc, runcRoot: this.runcRoot, dirs });
  }

  /**
   * Waits for background cleanups and stops the spare network namespace.
   * Running containers are not touched (the watchdog stays while any runs).
   */
  async close(): Promise<void> {
    this.#closed = true;
    const spare = this.#spareRoot;
    this.#spareRoot = undefined;
    await spare?.close();
    await this.#network.close();
    await Promise.allSettled([...this.#pending]);
    if (this.#running.size === 0) this.#watchdog.stop();
  }

  /** The pid of the watchdog covering this executor's containers, while one runs. */
  watchdogPid(): number | undefined {
    return this.#watchdog.pid;
  }

  /**
   * The process to mount `spec`'s root in. The spare (spawned while the
   * previous container ran) is taken only by a container that needs no host
   * mount made after it was spawned — its namespace is a copy of the host's
   * mounts of that moment: only tmpfs mounts (made by runc), no bundle
   * tmpfs, no stdin; any other gets a new process.
   */
  #rootNamespace(spec: ContainerSpec, stdin: boolean): RootNamespace {
    const spare = this.#spareRoot;
    if (!stdin && !spec.sensitive && spec.mounts.every((m) => m.type === 'tmpfs') && spare?.idle) {
      this.#spareRoot = undefined;
      return spare.take();
    }
    return RootNamespace.spawn({ stdin });
  }

  /**
   * The spare's namespace copies the host's mounts of the moment, a running
   * step's secret tmpfs included; the kernel detaches such a copy when its
   * mount point is removed on the host, as a step's scratch dir is once the
   * step is over.
   */
  #spawnSpareRoot(): void {
    if (this.#closed || this.#spareRoot?.idle) return;
    void this.#spareRoot?.close();
    this.#spareRoot = RootNamespace.spawn({ spare: true });
  }

  #background(work: Promise<void>): void {
    const tracked = work.catch(() => undefined).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  /** Ids of the containers this executor is running. */
  running(): string[] {
    return [...this.#running.keys()];
  }

  async run(spec: ContainerSpec, io: RunIO = {}): Promise<number> {
    if (!ID_PATTERN.test(spec.id)) {
      throw new BktError('INVALID_ARGUMENT', `invalid container id "${spec.id}"`, { attribute: 'id' });
    }
    if (ownerPid(spec.id) !== process.pid) {
      throw new BktError('INVALID_ARGUMENT', `container id "${spec.id}" does not have the form <name>-${process.pid}-<rest>`, {
        attribute: 'id',
      });
    }
    if (spec.rootfsMount && spec.process.tty) {
      throw new BktError('INVALID_ARGUMENT', 'a root mounted by the executor (rootfsMount) cannot be combined with a terminal', { attribute: 'rootfsMount' });
    }
    if (this.#running.has(spec.id)) {
      throw new BktError('INVALID_ARGUMENT', `container ${spec.id} is already running`, { attribute: 'id' });
    }
    if (io.signal?.aborted) throw cancelled(spec.id);
    const bundle = join(this.stateDir, 'bundles', spec.id);
    const capabilities = spec.security === 'insecure' ? privilegedCapabilities() : DEFAULT_CAPABILITIES;
    const entry: RunningContainer = { spec, bundle, capabilities, execCount: 0, root: spec.rootfs };
    this.#running.set(spec.id, entry);

    const cleanups: (() => Promise<void>)[] = [];
    let ns: RootNamespace | undefined;
    let afterRun: (() => void) | void = undefined;
    const log = join(bundle, 'runc.log');
    const runcArgs = ['--root', this.runcRoot, '--log', log, '--log-format', 'json', 'run', '--bundle', bundle, '--no-new-keyring', spec.id];
    // The bundle's few small files are made and removed with synchronous calls: each is a moment's work, and a step
    // waits for all (an asynchronous removal's several sequential round trips to the thread pool each wait for a
    // wake-up: on a busy machine, for a time slice).
    try {
      mkdirSync(bundle, { recursive: true });
      cleanups.push(async () => rmSync(bundle, { recursive: true, force: true }));
      if (spec.sensitive) {
        await mountTmpfs(bundle, { mode: 0o700, sizeBytes: 16 * 1024 * 1024 });
        cleanups.push(() => unmount(bundle));
      }
      const hostname = spec.hostname || DEFAULT_HOSTNAME;
      const hosts = join(bundle, 'hosts');
      const resolvConf = join(bundle, 'resolv.conf');
      const hostsText = hostsFile(hostname, spec.extraHosts ?? []);
      // The network and the bundle's /etc files are made while the root is being mounted (they do not depend on it).
      const opening = this.#network.open(spec.network);
      // Stopping the namespace's helpers need not delay the step's result; close() waits for it.
      cleanups.push(async () => {
        const opened = await opening.catch(() => undefined);
        if (opened) this.#background(opened.release());
      });
      const etcWritten = opening.then((opened) => {
        writeFileSync(hosts, hostsText);
        writeFileSync(resolvConf, opened.resolvConf);
      });
      etcWritten.catch(() => undefined);
      // Mounted after the bundle's tmpfs, which the namespace must see; runc runs there once the bundle is written.
      if (spec.rootfsMount) {
        ns = this.#rootNamespace(spec, !!io.stdin);
        await ns.mount(spec.rootfsMount, spec.rootfs, this.#runc, runcArgs, `container ${spec.id}`);
      }
      const root = ns ? ns.root : spec.rootfs;
      entry.root = root;
      afterRun = io.onRoot?.(root);
      const user = resolveUser(root, spec.process.user ?? '');
      const cwd = spec.process.cwd || '/';
      if (!spec.readonlyRootfs) makeWorkdir(root, cwd, user);
      const net = await opening;
      await etcWritten;
      const oci = buildSpec({
        rootfs: spec.rootfs,
        readonlyRootfs: spec.readonlyRootfs,
        args: spec.process.args,
        env: withDefaultEnv(spec.process.env),
        cwd,
        user,
        hostname,
        mounts: spec.mounts,
        etcFiles: { hosts, resolvConf },
        ulimits: spec.ulimits ?? [],
        cgroupsPath: join('/', spec.cgroupParent || 'bkt', spec.id),
        netns: net.netns,
        security: spec.security,
        pidsLimit: this.#pidsLimit,
        terminal: spec.process.tty,
      });
      writeFileSync(join(bundle, 'config.json'), JSON.stringify(oci), { mode: 0o600 });
      if (io.signal?.aborted) throw cancelled(spec.id);

      this.#watchdog.ensureRunning();
      const ttyName = join(bundle, 'tty-run');
      let child: ChildProcess;
      if (ns) {
        child = ns.child;
        // The root stays mounted after the command only when something is to be done in it then.
        ns.start({ keepRoot: afterRun !== undefined });
        // While this one runs: the next step's need not wait for a process to start.
        this.#spawnSpareRoot();
      } else {
        child = spec.process.tty
          ? spawnInTerminal(this.#runc, runcArgs, ttyName, spec.process.size)
          : spawn(this.#runc, runcArgs, { stdio: [io.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
      }
      this.#watchdog.watchRunc(child);
      io.onControl?.({
        resize: (size) => resizeTerminal(spec.process.tty ? ttyName : undefined, size),
        signal: async (n) => {
          const res = await runCommand(this.#runc, ['--root', this.runcRoot, 'kill', spec.id, String(n)]);
          if (res.code !== 0) throw new BktError('NOT_FOUND', `cannot signal container ${spec.id}: ${res.stderr.trim()}`, { container: spec.id });
        },
      });
      io.onStarted?.();
      const rootNs = ns;
      const code = rootNs
        ? await this.#supervise(child, io, () => this.#killContainer(spec.id, rootNs.exited.then(() => undefined, () => undefined), () => rootNs.kill()), rootNs.exited)
        : await this.#supervise(child, io, () => this.#killContainer(spec.id, closedOf(child), () => tryKill(child.pid)));
      if (io.signal?.aborted) throw cancelled(spec.id);
      await this.#checkRuncLog(log, spec.id, code);
      return code;
    } finally {
      this.#running.delete(spec.id);
      if (io.signal?.aborted) await this.#forceDelete(spec.id);
      try {
        afterRun?.();
      } catch {
        // As the other cleanups: best effort.
      }
      // The root's namespace ends (its unmount syncs the upper's filesystem) while the rest is cleaned up.
      await Promise.all([
        ns?.close(),
        (async () => {
          for (const cleanup of cleanups.reverse()) {
            try {
              await cleanup();
            } catch {
              // Best effort: one failed cleanup must not keep the others from running.
            }
          }
        })(),
      ]);
    }
  }

  async exec(id: string, process: ProcessSpec, io: ProcessIO = {}): Promise<number> {
    const container = this.#running.get(id);
    if (!container) throw new BktError('NOT_FOUND', `no running container ${id}`, { container: id });
    if (io.signal?.aborted) throw cancelled(id);
    const user = resolveUser(container.root, process.user ?? container.spec.process.user ?? '');
    const n = ++container.execCount;
    const processFile = join(container.bundle, `exec-${n}.json`);
    const pidFile = join(container.bundle, `exec-${n}.pid`);
    const caps =
      process.security === 'insecure' ? privilegedCapabilities() : process.security === 'sandbox' ? DEFAULT_CAPABILITIES : container.capabilities;
    const processJson = {
      terminal: process.tty ?? false,
      user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
      args: process.args,
      env: withDefaultEnv(process.env),
      cwd: process.cwd || container.spec.process.cwd || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: false,
    };
    await writeFile(processFile, JSON.stringify(processJson), { mode: 0o600 });
    const ttyName = join(container.bundle, `tty-${n}`);
    const processPid = async () => Number(await readFile(pidFile, 'utf8').catch(() => ''));
    try {
      const runcArgs = ['--root', this.runcRoot, 'exec', '--process', processFile, '--pid-file', pidFile, id];
      const child = process.tty
        ? spawnInTerminal(this.#runc, runcArgs, ttyName, process.size)
        : spawn(this.#runc, runcArgs, { stdio: [io.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
      io.onControl?.({
        resize: (size) => resizeTerminal(process.tty ? ttyName : undefined, size),
        signal: async (sig) => {
          const pid = await waitForPid(processPid, child);
          if (!pid) throw new BktError('NOT_FOUND', `process ${n} of container ${id} is not running`, { container: id });
          try {
            globalThis.process.kill(pid, sig);
          } catch (err) {
            throw new BktError('NOT_FOUND', `cannot signal process ${n} of container ${id}: ${(err as Error).message}`, { container: id });
          }
        },
      });
      const code = await this.#supervise(child, io, async () => {
        const pid = await processPid();
        if (pid > 0) tryKill(pid);
        tryKill(child.pid);
      });
      if (io.signal?.aborted) throw cancelled(id);
      return code;
    } finally {
      await rm(processFile, { force: true });
      await rm(pidFile, { force: true });
      await rm(ttyName, { force: true });
    }
  }

  async state(id: string): Promise<string | undefined> {
    const res = await runCommand(this.#runc, ['--root', this.runcRoot, 'state', id]);
    if (res.code !== 0) return undefined;
    try {
      return (JSON.parse(res.stdout) as { status?: string }).status;
    } catch {
      return undefined;
    }
  }

  /**
   * Stops and removes what processes that no longer exist left in our runc
   * root: their containers (`runc delete --force` kills one still running),
   * then their bundles and scratch dirs (secret tmpfs unmounted first). Only
   * ids `<idPrefix>-<pid>-…` of a dead pid are touched, so workers of other
   * live processes on the same store are left alone. Returns the ids of the
   * containers removed.
   */
  async sweepStale(idPrefix: string): Promise<string[]> {
    const stale = (id: string) => {
      const pid = id.startsWith(`${idPrefix}-`) ? ownerPid(id) : null;
      return pid !== null && !isAlive(pid);
    };
    const removed: string[] = [];
    if ((await readdir(this.runcRoot).catch(() => [] as string[])).length > 0) {
      const res = await runCommand(this.#runc, ['--root', this.runcRoot, 'list', '-q']);
      for (const id of res.stdout.split('\n').filter(stale)) {
        await this.#forceDelete(id);
        removed.push(id);
      }
    }
    for (const dir of [join(this.stateDir, 'bundles'), ...(this.#runDirs ? [this.#runDirs] : [])]) {
      for (const id of (await readdir(dir).catch(() => [] as string[])).filter(stale)) {
        for (const mount of await mountsUnder(join(dir, id))) await unmount(mount);
        await rm(join(dir, id), { recursive: true, force: true });
      }
    }
    return removed;
  }

  /**
   * Feeds stdin, forwards output, resolves with the exit code (`exited`'s,
   * when given, else the child's); `kill` runs when `io.signal` aborts.
   */
  #supervise(child: ChildProcess, io: ProcessIO, kill: () => Promise<void>, exited?: Promise<number>): Promise<number> {
    return new Promise((resolve, reject) => {
      exited?.then(
        (code) => {
          io.signal?.removeEventListener('abort', onAbort);
          resolve(code);
        },
        (err: unknown) => {
          io.signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
      if (io.stdin && child.stdin) io.stdin.pipe(child.stdin).on('error', () => {});
      child.stdin?.on('error', () => {});
      child.stdout!.on('data', (d: Buffer) => io.stdout?.(d));
      child.stderr!.on('data', (d: Buffer) => io.stderr?.(d));
      const onAbort = () => void kill();
      io.signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', (err) => {
        io.signal?.removeEventListener('abort', onAbort);
        const hint = child.spawnfile === 'script' ? ` (a terminal needs util-linux's script)` : '';
        reject(new BktError('INTERNAL', `cannot run ${child.spawnfile}: ${err.message}${hint}`, {}, { cause: err }));
      });
      child.on('close', (code, signal) => {
        io.signal?.removeEventListener('abort', onAbort);
        resolve(code ?? 128 + signalNumber(signal));
      });
    });
  }

  /** SIGKILL to the container's init (its pid namespace dies with it); `lingering` (the runc process itself) if `runcExited` takes long. */
  async #killContainer(id: string, runcExited: Promise<void>, lingering: () => void): Promise<void> {
    await runCommand(this.#runc, ['--root', this.runcRoot, 'kill', id, 'KILL']);
    const timer = setTimeout(lingering, 1000);
    await runcExited;
    clearTimeout(timer);
  }

  async #forceDelete(id: string): Promise<void> {
    await runCommand(this.#runc, ['--root', this.runcRoot, 'delete', '--force', id]);
  }

  /** A non-zero exit with runc's own error in its log means runc failed, not the process. */
  async #checkRuncLog(log: string, id: string, code: number): Promise<void> {
    if (code === 0) return;
    const text = await readFile(log, 'utf8').catch(() => '');
    const errors = text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l) as { level?: string; msg?: string };
        } catch {
          return {};
        }
      })
      .filter((e) => e.level === 'error' || e.level === 'fatal')
      .map((e) => e.msg);
    if (errors.length > 0) {
      throw new BktError('INTERNAL', `runc could not run container ${id}: ${errors.join('; ')}`, { container: id });
    }
  }
}

/**
 * Spawns `cmd args…` in a new host pseudo-terminal (util-linux's `script`),
 * whose name goes to `ttyName`: runc, finding a terminal on its stdio, makes
 * the container's console, copies between the two, and resizes the
 * container's console when the host one is resized (`resizeTerminal`).
 * Its stdin is always a pipe: one that ends makes `script` send the
 * terminal's EOF character, one left open (no stdin given) sends nothing;
 * it is closed once the command has exited.
 */
function spawnInTerminal(cmd: string, args: string[], ttyName: string, size: { rows: number; cols: number } | undefined): ChildProcess {
  const rows = Math.max(1, Math.floor(size?.rows ?? 24));
  const cols = Math.max(1, Math.floor(size?.cols ?? 80));
  // script waits for the end of its stdin after its command exits: the command reports its exit on fd 3, and the pipe is closed then.
  const line = `stty rows ${rows} cols ${cols} && tty > ${shellQuote(ttyName)} && ${[cmd, ...args].map(shellQuote).join(' ')} 3>&-; rc=$?; echo $rc >&3; exit $rc`;
  const child = spawn('script', ['--quiet', '--return', '--command', line, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, SHELL: '/bin/sh' },
  });
  const exited = child.stdio[3] as NodeJS.ReadableStream | null;
  exited?.on('data', () => child.stdin?.destroy());
  exited?.on('error', () => {});
  return child;
}

/** Sets the size of the host terminal named in `ttyName` (runc passes it on to the container's console). */
async function resizeTerminal(ttyName: string | undefined, size: { rows: number; cols: number }): Promise<void> {
  if (!ttyName) throw new BktError('INVALID_ARGUMENT', 'cannot resize a process that has no terminal (start it with tty)', { attribute: 'tty' });
  const rows = Math.floor(size.rows);
  const cols = Math.floor(size.cols);
  if (!(rows > 0 && cols > 0 && rows < 65536 && cols < 65536)) {
    throw new BktError('INVALID_ARGUMENT', `invalid terminal size ${size.rows}x${size.cols}`, { attribute: 'size' });
  }
  let name = '';
  for (let i = 0; i < 100 && !name; i++) {
    name = (await readFile(ttyName, 'utf8').catch(() => '')).trim();
    if (!name) await new Promise((r) => setTimeout(r, 20));
  }
  if (!name.startsWith('/dev/pts/')) throw new BktError('NOT_FOUND', 'the process\'s terminal is gone', { attribute: 'tty' });
  await mustRun('stty', ['-F', name, 'rows', String(rows), 'cols', String(cols)]);
}

/** The pid runc wrote for an exec'd process, waiting briefly for it while runc starts it; 0 once runc has exited without one. */
async function waitForPid(read: () => Promise<number>, runc: ChildProcess): Promise<number> {
  for (let i = 0; i < 250; i++) {
    const pid = await read();
    if (pid > 0) return pid;
    if (runc.exitCode !== null || runc.signalCode !== null) return 0;
    await new Promise((r) => setTimeout(r, 20));
  }
  return 0;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Creates the working directory (and missing parents) owned by the process's user, as BuildKit does. */
function makeWorkdir(rootfs: string, cwd: string, user: ResolvedUser): void {
  const host = rootPath(rootfs, cwd);
  if (existsSync(host)) return;
  const missing: string[] = [];
  for (let p = host; p.length > rootfs.length && !existsSync(p); p = dirname(p)) missing.unshift(p);
  mkdirSync(host, { recursive: true, mode: 0o755 });
  for (const p of missing) chownSync(p, user.uid, user.gid);
}

function withDefaultEnv(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? env : [`PATH=${DEFAULT_PATH}`, ...env];
}

function hostsFile(hostname: string, extra: { host: string; ip: string }[]): string {
  const lines = [`127.0.0.1\tlocalhost ${hostname}`, '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const h of extra) {
    if (/[\s#]/.test(h.host) || /[\s#]/.test(h.ip) || !h.host || !h.ip) {
      throw new BktError('INVALID_ARGUMENT', `invalid extra host "${h.host}:${h.ip}"`, { attribute: 'extraHosts' });
    }
    lines.push(`${h.ip}\t${h.host}`);
  }
  return lines.join('\n') + '\n';
}

function cancelled(id: string): BktError {
  return new BktError('CANCELLED', `container ${id} was cancelled`, { container: id });
}

/** Resolves once `child` has exited and its streams are closed. */
function closedOf(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('close', () => resolve());
  });
}

function tryKill(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };

function signalNumber(signal: NodeJS.Signals | null): number {
  return (signal && SIGNALS[signal]) || 9;
}
