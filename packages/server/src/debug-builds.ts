/**
 * The builds bktd's buildx Controller keeps open: each solved (or failed)
 * with a `debug` session that lasts until the client disconnects, and the
 * processes it runs in the build's container (the result's, or the failed
 * step's as the step left it). Processes outlive the client's stream: one
 * re-attaches by id, its output meanwhile kept (bounded). A build no client
 * touched for `DEBUG_BUILD_IDLE_MS` with no process running is released; one
 * that ended without a hold is forgotten. No gRPC here: the
 * Controller handlers (controller.ts) translate messages to these calls.
 */
import { PassThrough } from 'node:stream';
import { BktError, type ContainerProcess, type ContainerProcessSpec, type InteractiveContainer, type TerminalSize } from '@bkt/core';
import { debugTarget, type BuildDebugSession, type SolveRequest, type Solver } from '@bkt/solver';

/** What a client asks of a process (buildx's `InvokeConfig`). */
export interface InvokeOptions {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  /** Empty, or `noUser`: the step's / image's user. */
  user: string;
  noUser: boolean;
  cwd: string;
  noCwd: boolean;
  tty: boolean;
  /** Kill every process of the build, make its container anew. */
  rollback: boolean;
}

/** Where a process's output goes while a client is attached. */
export interface ProcessSink {
  output(fd: 1 | 2, data: Uint8Array): void;
}

/** Output kept for a process no client is attached to, per process. */
const DETACHED_OUTPUT_BYTES = 1 << 20;

export class DebugProcess {
  readonly id: string;
  readonly options: InvokeOptions;
  readonly exited: Promise<number>;
  readonly #process: ContainerProcess;
  readonly #stdin: PassThrough;
  #sink: ProcessSink | undefined;
  #kept: { fd: 1 | 2; data: Uint8Array }[] = [];
  #keptBytes = 0;

  constructor(id: string, options: InvokeOptions, process: ContainerProcess, stdin: PassThrough) {
    this.id = id;
    this.options = options;
    this.#process = process;
    this.#stdin = stdin;
    this.exited = process.wait();
    this.exited.catch(() => undefined);
  }

  /** Sends output to `sink` from now on, first what was kept while detached; the previous sink is detached. */
  attach(sink: ProcessSink): void {
    this.#sink = sink;
    const kept = this.#kept.splice(0);
    this.#keptBytes = 0;
    for (const k of kept) sink.output(k.fd, k.data);
  }

  /** Stops sending output to `sink` (when it is the attached one): output is kept for the next client. */
  detach(sink: ProcessSink): void {
    if (this.#sink === sink) this.#sink = undefined;
  }

  /** Called by the container with the process's output. */
  output(fd: 1 | 2, data: Uint8Array): void {
    if (this.#sink) {
      this.#sink.output(fd, data);
      return;
    }
    this.#kept.push({ fd, data });
    this.#keptBytes += data.length;
    while (this.#keptBytes > DETACHED_OUTPUT_BYTES && this.#kept.length > 1) this.#keptBytes -= this.#kept.shift()!.data.length;
  }

  write(data: Uint8Array): void {
    if (!this.#stdin.writableEnded) this.#stdin.write(data);
  }

  closeStdin(): void {
    this.#stdin.end();
  }

  resize(size: TerminalSize): Promise<void> {
    return this.#process.resize(size);
  }

  signal(name: string): Promise<void> {
    return this.#process.signal(name);
  }
}

/** One build kept open for debugging. */
export class DebugBuild {
  readonly ref: string;
  readonly processes = new Map<string, DebugProcess>();
  /** Settles when the build has solved (exporter response) or failed (its error). */
  readonly outcome: Promise<Record<string, string>>;
  /** Settles when the solve has ended (the build released). */
  readonly finished: Promise<void>;
  #session: BuildDebugSession | undefined;
  #container: Promise<InteractiveContainer> | undefined;
  #release!: () => void;
  #n = 0;

  constructor(ref: string, solve: (debug: NonNullable<SolveRequest['debug']>) => Promise<unknown>) {
    this.ref = ref;
    let settle!: (r: Record<string, string> | Error) => void;
    const outcome = new Promise<Record<string, string> | Error>((resolve) => (settle = resolve));
    const held = new Promise<void>((resolve) => (this.#release = resolve));
    this.finished = solve(async (session) => {
      this.#session = session;
      settle(session.error ?? session.exporterResponse ?? {});
      // The build stays open (its snapshots held) until the client disconnects or it is cancelled.
      await Promise.race([held, new Promise<void>((resolve) => session.signal.addEventListener('abort', () => resolve(), { once: true }))]);
      await this.#stopAll();
    }).then(
      () => undefined,
      (err: Error) => settle(err),
    );
    this.outcome = outcome.then((r) => (r instanceof Error ? Promise.reject(r) : r));
    this.outcome.catch(() => undefined);
  }

  /** Whether the build has solved or failed and can run processes. */
  get open(): boolean {
    return this.#session !== undefined;
  }

  /**
   * Starts a process (or, `rollback`, first kills them all and makes the
   * container anew) in the build's container: the failed step's, or the result's.
   */
  async start(requestedId: string, options: InvokeOptions, sink: ProcessSink): Promise<DebugProcess> {
    await this.outcome.catch(() => undefined);
    const session = this.#session;
    if (!session) throw new BktError('NOT_FOUND', `build ${this.ref} has nothing to run a process in (it ended without a result)`, { ref: this.ref });
    const target = debugTarget(session);
    if (!target) {
      const why = session.error ? 'it failed before any exec step did' : 'its result is empty';
      throw new BktError('NOT_FOUND', `build ${this.ref} has no container to run a process in: ${why}`, { ref: this.ref });
    }
    if (options.rollback) await this.#stopAll();
    const id = requestedId || `p${++this.#n}`;
    if (this.processes.has(id)) throw new BktError('INVALID_ARGUMENT', `build ${this.ref} already runs process ${id}`, { attribute: 'ProcessID' });
    this.#container ??= session.newContainer(target.request);
    let container: InteractiveContainer;
    try {
      container = await this.#container;
    } catch (err) {
      this.#container = undefined;
      throw err;
    }
    const d = target.process;
    const args = [...options.entrypoint, ...options.cmd];
    const spec: ContainerProcessSpec = {
      ...d,
      args: args.length > 0 ? args : d.args,
      env: [...(d.env ?? []), ...options.env],
      user: options.noUser || options.user === '' ? d.user : options.user,
      cwd: options.noCwd || options.cwd === '' ? d.cwd : options.cwd,
      tty: options.tty,
    };
    const stdin = new PassThrough();
    let proc: DebugProcess | undefined;
    const early: { fd: 1 | 2; data: Uint8Array }[] = [];
    const out = (fd: 1 | 2) => (data: Uint8Array) => (proc ? proc.output(fd, data) : early.push({ fd, data }));
    let started: ContainerProcess;
    try {
      started = await container.start(spec, { stdin, stdout: out(1), stderr: out(2) });
    } catch (err) {
      // The container's first process has exited (or it never started): the next process gets a new one.
      if (container.processes().length === 0) {
        this.#container = undefined;
        await container.release().catch(() => undefined);
      }
      throw err;
    }
    proc = new DebugProcess(id, options, started, stdin);
    this.processes.set(id, proc);
    proc.attach(sink);
    for (const e of early) proc.output(e.fd, e.data);
    const forget = () => {
      if (this.processes.get(id) === proc) this.processes.delete(id);
    };
    proc.exited.then(forget, forget);
    return proc;
  }

  /** Kills process `id` and forgets it; `NOT_FOUND` when the build runs no such process. */
  async disconnectProcess(id: string): Promise<void> {
    const proc = this.processes.get(id);
    if (!proc) throw new BktError('NOT_FOUND', `build ${this.ref} runs no process ${id}`, { attribute: 'ProcessID' });
    this.processes.delete(id);
    await proc.signal('KILL').catch(() => undefined);
    await proc.exited.catch(() => undefined);
  }

  /** Ends the debugging: processes killed, the container released, the build finished. */
  async release(): Promise<void> {
    this.#release();
    await this.finished;
  }

  async #stopAll(): Promise<void> {
    const container = this.#container;
    this.#container = undefined;
    this.processes.clear();
    if (container) await (await container.catch(() => undefined))?.release();
  }
}

/** A held build no client has touched (a Controller call naming it) for this long, with no process running, is released. */
export const DEBUG_BUILD_IDLE_MS = 30 * 60_000;

/** The Controller's builds by ref. */
export class DebugBuilds {
  readonly #builds = new Map<string, DebugBuild>();
  readonly #idle = new Map<string, NodeJS.Timeout>();
  readonly #idleMs: number;

  constructor(opts: { idleMs?: number } = {}) {
    this.#idleMs = opts.idleMs ?? DEBUG_BUILD_IDLE_MS;
  }

  /** Starts build `ref` with `req` on `solver`; `INVALID_ARGUMENT` when a build of that ref is held. */
  start(ref: string, solver: Solver, req: Omit<SolveRequest, 'debug' | 'buildId'>): DebugBuild {
    if (this.#builds.has(ref)) throw new BktError('INVALID_ARGUMENT', `a build with ref ${ref} is already held; disconnect it first`, { attribute: 'Ref' });
    const build = new DebugBuild(ref, (debug) => solver.solve({ ...req, buildId: ref, debug }));
    this.#builds.set(ref, build);
    void build.outcome.catch(() => undefined).then(() => this.#touch(ref, build));
    // A build that ended without a hold (failed before its debug session, cancelled, released) is forgotten.
    void build.finished.finally(() => {
      if (this.#builds.get(ref) !== build) return;
      this.#builds.delete(ref);
      clearTimeout(this.#idle.get(ref));
      this.#idle.delete(ref);
    });
    return build;
  }

  /** (Re)arms build's idle release: released after `idleMs` untouched, unless a process still runs. */
  #touch(ref: string, build: DebugBuild): void {
    if (this.#builds.get(ref) !== build) return;
    clearTimeout(this.#idle.get(ref));
    const timer = setTimeout(() => {
      if (this.#builds.get(ref) !== build) return;
      if (build.processes.size > 0) return this.#touch(ref, build);
      this.#builds.delete(ref);
      this.#idle.delete(ref);
      void build.release();
    }, this.#idleMs);
    timer.unref();
    this.#idle.set(ref, timer);
  }

  /** Whether a build of `ref` is held. */
  has(ref: string): boolean {
    return this.#builds.has(ref);
  }

  /** Build `ref` (its idle time starts anew once it has an outcome); `NOT_FOUND` when none is held. */
  get(ref: string): DebugBuild {
    const build = this.#builds.get(ref);
    if (!build) throw new BktError('NOT_FOUND', `no build with ref ${ref} (see List)`, { attribute: 'Ref' });
    if (this.#idle.has(ref)) this.#touch(ref, build);
    return build;
  }

  refs(): string[] {
    return [...this.#builds.keys()].sort();
  }

  /** Releases build `ref` (processes, container, the build itself); `NOT_FOUND` when none. */
  async disconnect(ref: string): Promise<void> {
    const build = this.get(ref);
    this.#builds.delete(ref);
    clearTimeout(this.#idle.get(ref));
    this.#idle.delete(ref);
    await build.release();
  }

  /** Releases every build (daemon shutdown). */
  async closeAll(): Promise<void> {
    const all = [...this.#builds.values()];
    this.#builds.clear();
    for (const t of this.#idle.values()) clearTimeout(t);
    this.#idle.clear();
    await Promise.allSettled(all.map((b) => b.release()));
  }
}
