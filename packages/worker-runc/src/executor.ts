/**
 * The executor contract: run a process in a fresh container over a prepared
 * root filesystem (`run`), and start a second process in a running one
 * (`exec`, for debug shells). The ExecOp executor (execop.ts) translates
 * `pb.ExecOp` into these calls; the runc implementation is in runc.ts.
 */
import type { Readable } from 'node:stream';

export type NetworkMode = 'sandbox' | 'none' | 'host';
export type SecurityMode = 'sandbox' | 'insecure';

/** A process to start. `user` and `cwd` are resolved inside the container's root. */
export interface ProcessSpec {
  args: string[];
  /** `KEY=value` entries; PATH and HOME get defaults when absent. */
  env: string[];
  /** Working directory in the container; created (owned by the user) when missing. Default `/`. */
  cwd?: string;
  /** `uid[:gid]` or names from the rootfs's /etc/passwd and /etc/group. Default root. */
  user?: string;
  /**
   * A terminal (runc's own console handling, in a host pseudo-terminal made
   * by util-linux's `script`): stdout and stderr arrive as one stream on
   * `stdout`; `ProcessControl.resize` changes its size.
   */
  tty?: boolean;
  /** With `tty`: the first size (default 24×80). */
  size?: { rows: number; cols: number };
  /** For `exec`: this process's capabilities (default: the container's mode). */
  security?: SecurityMode;
}

/** What a caller can do to a started process. */
export interface ProcessControl {
  /** Resizes its terminal (`INVALID_ARGUMENT` without `tty`). */
  resize(size: { rows: number; cols: number }): Promise<void>;
  /** Sends signal number `n` to it. */
  signal(n: number): Promise<void>;
}

/** Where a process's input comes from and its output goes; all optional. */
export interface ProcessIO {
  stdin?: Readable;
  stdout?: (chunk: Uint8Array) => void;
  stderr?: (chunk: Uint8Array) => void;
  /** Aborting kills the process (for `run`: the whole container). */
  signal?: AbortSignal;
  /** Called once the process is spawned, with what can be done to it. */
  onControl?: (control: ProcessControl) => void;
}

/** What `Executor.run` takes besides `ProcessIO`. */
export interface RunIO extends ProcessIO {
  /** Called once the process is started. */
  onStarted?: () => void;
  /**
   * Called with the host path of the mounted root before the process
   * starts; what it returns is called once the process has exited, while
   * the root is still mounted (mount stubs are recorded and removed so).
   */
  onRoot?: (root: string) => (() => void) | void;
}

/** A mount in the container, prepared on the host. */
export type ContainerMount =
  | { type: 'bind'; source: string; dest: string; readonly: boolean }
  | { type: 'tmpfs'; dest: string; sizeBytes?: number };

export interface HostEntry {
  host: string;
  ip: string;
}

export interface Ulimit {
  /** `nofile`, `nproc`, … (RLIMIT_ name without prefix, any case). */
  name: string;
  soft: number;
  hard: number;
}

/** Everything about one container. */
export interface ContainerSpec {
  /** Unique among running containers; [A-Za-z0-9_.-]. */
  id: string;
  /** Host path of the root filesystem (e.g. an overlay mount); with `rootfsMount`, the empty directory to mount it on. */
  rootfs: string;
  /**
   * The root is not mounted yet: the executor mounts this filesystem on
   * `rootfs` in a mount namespace of the container's own, which drops it
   * when the container is gone (core's `MutableSnapshot.deferredMount`).
   * Not with `process.tty`.
   */
  rootfsMount?: { type: string; source: string; options: string };
  readonlyRootfs?: boolean;
  mounts: ContainerMount[];
  process: ProcessSpec;
  /** Default `buildkitsandbox`, as BuildKit's. */
  hostname?: string;
  /** Added to the generated /etc/hosts. */
  extraHosts?: HostEntry[];
  ulimits?: Ulimit[];
  /** Parent cgroup (cgroupfs path) of the container's cgroup. */
  cgroupParent?: string;
  network: NetworkMode;
  security: SecurityMode;
  /**
   * The spec holds secret values (secret env): its bundle is kept on a tmpfs
   * so that they never reach a disk.
   */
  sensitive?: boolean;
}

export interface Executor {
  /**
   * Runs `spec.process` in a new container and resolves with its exit code
   * once the container and everything it set up are gone. Rejects with
   * `BktError('CANCELLED')` when `io.signal` aborts.
   */
  run(spec: ContainerSpec, io?: RunIO): Promise<number>;
  /**
   * Runs a further process in the running container `id`; resolves with its
   * exit code. `BktError('NOT_FOUND')` when no such container runs.
   */
  exec(id: string, process: ProcessSpec, io?: ProcessIO): Promise<number>;
  /** The runtime's status of container `id` (`creating`, `created`, `running`, `stopped`); undefined when it has none. */
  state?(id: string): Promise<string | undefined>;
}
