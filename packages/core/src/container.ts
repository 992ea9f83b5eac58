/**
 * Interactive containers: a container made from result snapshots, with
 * processes a client drives (stdin, output, a tty, resize, signals). What
 * LLBBridge's NewContainer / ExecProcess / ReleaseContainer serve, what
 * `bkt build --invoke` and `bkt debug` open, and what the buildx
 * Controller's Invoke attaches to.
 *
 * A capability an op executor may declare (`ContainerProvider`), as
 * `ImageConfigResolver` is one a source may declare: the solver finds the
 * executor registered for `exec` and checks it with `isContainerProvider`.
 * Like `OpExecutor`, it is generic over the mount type so that core names no
 * `@bkt/api` type: the runc worker takes `pb.Mount`s, exactly as an ExecOp's.
 */
import type { Readable } from 'node:stream';
import { BktError } from './errors.js';
import type { BuildContext, Digest, OpExecutor, OpInput, Platform, Snapshot } from './types.js';

/** `sandbox` (the default: a namespace of its own with the worker's network), `none` (loopback only), `host` (needs `network.host`). */
export type ContainerNetworkMode = 'sandbox' | 'none' | 'host';

/** `sandbox` (the default), or `insecure` (privileged; needs `security.insecure`). */
export type ContainerSecurityMode = 'sandbox' | 'insecure';

/** A terminal's size in character cells. */
export interface TerminalSize {
  rows: number;
  cols: number;
}

/**
 * A container to make (LLBBridge's `NewContainerRequest`, with its result
 * refs resolved to snapshots). Nothing runs until the first process starts.
 */
export interface NewContainerRequest<Mount = unknown> {
  /**
   * The mounts, as an ExecOp's (`pb.Mount` for the runc worker): exactly one
   * on `/`; a BIND mount's `input` indexes `inputs` (-1: an empty tree),
   * `selector` picks a directory of it, `readonly` as given (a writable one
   * is a fresh overlay whose changes are thrown away on release); CACHE,
   * TMPFS, SECRET and SSH mounts as in an exec step (from the build's
   * secrets and ssh agents). `output` is ignored: a container has no outputs.
   */
  mounts: Mount[];
  /** The trees the mounts read, by index (the gateway's result refs, a failed step's snapshots). */
  inputs: OpInput[];
  /** Default `sandbox`. `host` needs the build's `network.host` entitlement. */
  network?: ContainerNetworkMode;
  /** Added to the container's generated /etc/hosts. */
  extraHosts?: { host: string; ip: string }[];
  /** Default `buildkitsandbox`, as an exec step's. */
  hostname?: string;
  /** The platform the container's processes are for (default: the host's); one the worker cannot run is refused. */
  platform?: Platform;
  /**
   * Worker constraints (`pb.WorkerConstraints.filter`, containerd filter
   * expressions over worker labels): the worker refuses ones it does not
   * satisfy, naming them.
   */
  constraints?: string[];
}

/** A process to start in a container (the gateway's `InitMessage` with its `pb.Meta`). */
export interface ContainerProcessSpec {
  args: string[];
  /** `KEY=value`; `PATH` gets the usual default when absent. */
  env?: string[];
  /** Working directory in the container (default `/`; created when missing and the root is writable). */
  cwd?: string;
  /** `uid[:gid]` or names from the container's /etc/passwd and /etc/group (default root). */
  user?: string;
  /** A terminal: stdout and stderr are one stream (given to `stdout`), resizable. */
  tty?: boolean;
  /** With `tty`: the terminal's first size (default 24×80). */
  size?: TerminalSize;
  /**
   * `insecure` needs the build's `security.insecure` entitlement. The first
   * process's mode is the container's (its seccomp profile and devices);
   * later processes choose their own capabilities.
   */
  security?: ContainerSecurityMode;
}

/** Where a process's input comes from and its output goes. */
export interface ContainerProcessIO {
  /** The process's stdin; its end closes the process's stdin. Absent: stdin is empty. */
  stdin?: Readable;
  stdout?: (chunk: Uint8Array) => void;
  /** Not called with `tty` (the terminal carries both streams). */
  stderr?: (chunk: Uint8Array) => void;
}

/** A running process of an `InteractiveContainer`. */
export interface ContainerProcess {
  /** Unique within its container. */
  readonly id: string;
  /**
   * Resolves with the exit code once the process has exited and its output
   * has been delivered (128 + n for a process killed by signal n).
   */
  wait(): Promise<number>;
  /** Resizes the process's terminal (its foreground processes get SIGWINCH); `INVALID_ARGUMENT` without `tty`. */
  resize(size: TerminalSize): Promise<void>;
  /** Sends a signal by name (`INT`, `SIGTERM`, `WINCH`, …) or number; `INVALID_ARGUMENT` naming an unknown one. */
  signal(signal: string | number): Promise<void>;
}

/**
 * A container made from snapshots. As BuildKit's gateway containers: the
 * first process started is the container's init; when it exits the
 * container stops, and starting another process is a `NOT_FOUND` error.
 * Further processes run beside the init (`runc exec`), any number at once.
 */
export interface InteractiveContainer {
  readonly id: string;
  /** Starts a process (see the class comment); rejects with a `BktError` naming what is wrong (user, cwd, platform). */
  start(process: ContainerProcessSpec, io?: ContainerProcessIO): Promise<ContainerProcess>;
  /** Ids of the processes running now. */
  processes(): string[];
  /**
   * Kills every process, removes the container, unmounts and throws away
   * its writable mounts. Idempotent; also done when the build that made the
   * container finishes (`BuildContext.onFinish`).
   */
  release(): Promise<void>;
}

/** The capability: an op executor (the `exec` one) that makes interactive containers. */
export interface ContainerProvider<Mount = unknown> {
  /**
   * Prepares a container's mounts (nothing runs yet). Checks the request's
   * entitlements against `ctx.entitlements` (`PERMISSION_DENIED` naming the
   * entitlement), its platform and constraints. The container is released
   * when `ctx`'s build finishes, if not before.
   */
  newContainer(req: NewContainerRequest<Mount>, ctx: BuildContext): Promise<InteractiveContainer>;
}

/** Whether a registered op executor declares the `ContainerProvider` capability (`class X implements OpExecutor, ContainerProvider`). */
export function isContainerProvider(executor: OpExecutor | undefined): executor is OpExecutor & ContainerProvider {
  return typeof (executor as Partial<ContainerProvider> | undefined)?.newContainer === 'function';
}

// ---------------------------------------------------------------------------
// A failed exec step, as it was: BuildKit's errdefs.SolveError (with its
// ExecOp) and errdefs.ExecError (input and mount refs).
// ---------------------------------------------------------------------------

/**
 * What a failed exec step leaves so a client can recreate its container:
 * the op, the snapshots it read, and each mount's tree as the process left
 * it. The snapshots stay in the store until the build finishes (a solve's
 * `debug` callback runs before that; a daemon keeps a build open while a
 * debugging client holds it).
 */
export interface FailedExec<Op = unknown> {
  /** The op's digest (`SolveError.Op`'s). */
  opDigest: Digest;
  /** The vertex's name (`[2/3] RUN …`). */
  name: string;
  /** The op (`pb.ExecOp` for the runc worker): its meta is the step's args, env, cwd, user. */
  op: Op;
  /** The op's platform, when it named one. */
  platform?: Platform;
  /** The op's inputs, by index (`ExecError.Inputs`). */
  inputs: (Snapshot | null)[];
  /**
   * One per op mount, in order (`ExecError.Mounts`): a writable BIND
   * mount's tree as the failed process left it (the root's included); null
   * for the others (read-only binds read their input; cache, tmpfs, secret
   * and ssh mounts are made anew).
   */
  mounts: (Snapshot | null)[];
}

const FAILED_EXEC = Symbol.for('@bkt/core.failedExec');

/**
 * Attaches a failed step's state to its error (in `details`, under a symbol:
 * copied by `{ ...err.details }`, never serialised). Returns `err`.
 */
export function withFailedExec<E extends BktError>(err: E, failed: FailedExec): E {
  (err.details as Record<symbol, unknown>)[FAILED_EXEC] = failed;
  return err;
}

/** The failed step an error carries, in its details or those of an error in its `cause` chain. */
export function failedExecOf(err: unknown): FailedExec | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 16; e = (e as { cause?: unknown }).cause, depth++) {
    const details = (e as { details?: Record<symbol, unknown> }).details;
    const found = details?.[FAILED_EXEC] as FailedExec | undefined;
    if (found) return found;
  }
  return undefined;
}

/** The signals `ContainerProcess.signal` knows, by name without `SIG`, with Linux's numbers. */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = Object.freeze({
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12,
  PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22, URG: 23,
  XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, PWR: 30, SYS: 31,
});

/** A signal's number from its name (`INT`, `SIGINT`, any case) or number; `INVALID_ARGUMENT` naming an unknown one. */
export function signalNumber(signal: string | number): number {
  if (typeof signal === 'number' || /^\d+$/.test(signal)) {
    const n = Number(signal);
    if (Number.isInteger(n) && n >= 1 && n <= 64) return n;
  } else {
    const n = SIGNAL_NUMBERS[signal.toUpperCase().replace(/^SIG/, '')];
    if (n !== undefined) return n;
  }
  throw new BktError('INVALID_ARGUMENT', `unknown signal "${signal}" (want a name such as INT, TERM, HUP, or a number 1–64)`, { attribute: 'signal' });
}
