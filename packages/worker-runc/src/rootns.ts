/**
 * A container's root filesystem mounted in a mount namespace of its own, by
 * the one process that then runs the container (`runc run`): the mount is
 * made there and nowhere else, and it is gone when that namespace's last
 * process exits — no umount to run, and nothing left mounted on the host
 * when this process is killed, whenever that happens.
 *
 * The process is `unshare --mount --propagation private` executing a small
 * shell script (`ROOT_SCRIPT`): it mounts the root on the (empty) host
 * directory `target`, reports `ready` on fd 3 and waits for `go` on fd 4,
 * runs the command it was given (fds 3 and 4 closed), reports `exit <code>`
 * on fd 3, and waits for fd 4 to close before it exits itself. Meanwhile this
 * process sees the mounted root at `/proc/<pid>/root<target>`: it reads and
 * writes the root there before the command starts (the user's databases, the
 * working directory, mount stubs) and after it has exited (removing the
 * stubs), while the mount still exists. Fd 4 closing early (this process
 * gone, or an abort) makes the script exit without running the command.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { BktError } from '@bkt/core';

/** `$0` is a label for `ps`; `$1` type, `$2` source, `$3` options, `$4` target, `$5…` the command. */
export const ROOT_SCRIPT = String.raw`
type=$1 source=$2 options=$3 target=$4
shift 4
mount -t "$type" -o "$options" "$source" "$target" || exit 1
echo ready >&3
IFS= read -r go <&4 || exit 1
[ "$go" = go ] || exit 1
"$@" 3>&- 4<&-
rc=$?
echo "exit $rc" >&3
read -r _ <&4
exit $rc
`;

const LABEL = 'bkt-container-root';

export interface RootMount {
  type: string;
  source: string;
  options: string;
}

/** The process holding a container's root mount, until `close()`. */
export class RootNamespace {
  /** The mounted root as this process reaches it. */
  readonly root: string;
  /** Resolves with the command's exit status once it has exited (rejects when it never ran). */
  readonly exited: Promise<number>;
  readonly #child: ChildProcess;
  readonly #gone: Promise<void>;
  #started = false;
  #closed: Promise<void> | undefined;

  private constructor(child: ChildProcess, target: string, exited: Promise<number>, gone: Promise<void>) {
    this.#child = child;
    this.root = `/proc/${child.pid}/root${target}`;
    this.exited = exited;
    this.#gone = gone;
  }

  /** The spawned process: its stdout and stderr are the command's (and stdin, with `stdin`). */
  get child(): ChildProcess {
    return this.#child;
  }

  /**
   * Mounts `mount` on `target` in a new mount namespace and resolves once
   * it is there; `cmd args…` runs there on `start()`. A mount that fails is
   * a `BktError('INTERNAL')` quoting mount(8).
   */
  static async open(mount: RootMount, target: string, cmd: string, args: string[], opts: { stdin?: boolean; what: string }): Promise<RootNamespace> {
    const child = spawn(
      'unshare',
      ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', ROOT_SCRIPT, LABEL, mount.type, mount.source, mount.options, target, cmd, ...args],
      { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'], detached: true },
    );
    const control = child.stdio[4] as NodeJS.WritableStream & { destroy(): void };
    control.on('error', () => {});
    let stderr = '';
    const collect = (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString('utf8');
    };
    child.stderr!.on('data', collect);
    const lines = lineReader(child.stdio[3] as Readable);
    const closed = new Promise<{ code: number | null; err?: Error }>((resolve) => {
      child.on('error', (err) => resolve({ code: null, err }));
      child.on('close', (code) => resolve({ code }));
    });
    const failed = async (): Promise<never> => {
      const { code, err } = await closed;
      const why = err ? `cannot run unshare: ${err.message}` : stderr.trim() || `exit ${code}`;
      throw new BktError('INTERNAL', `cannot mount the root filesystem of ${opts.what}: ${why}`, {}, err ? { cause: err } : undefined);
    };
    const first = await Promise.race([lines.next(), closed.then(() => null)]);
    if (first !== 'ready') {
      control.destroy();
      return failed();
    }
    child.stderr!.off('data', collect);
    const exited = (async () => {
      const line = await Promise.race([lines.next(), closed.then(() => null)]);
      const m = line ? /^exit (\d+)$/.exec(line) : null;
      if (m) return Number(m[1]);
      const { code, err } = await closed;
      throw new BktError('INTERNAL', `the process holding the root of ${opts.what} ended early (${err?.message ?? `exit ${code}`})`);
    })();
    exited.catch(() => {});
    return new RootNamespace(child, target, exited, closed.then(() => undefined));
  }

  /** Runs the command. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    (this.#child.stdio[4] as NodeJS.WritableStream).write('go\n');
  }

  /**
   * Lets the process exit (without running the command when it has not
   * started) and waits for it: the root is unmounted once its namespace's
   * last process is gone. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      (this.#child.stdio[4] as NodeJS.WritableStream & { destroy(): void }).destroy();
      const timer = setTimeout(() => this.kill(), 10_000);
      this.#closed = this.#gone.finally(() => clearTimeout(timer));
    }
    return this.#closed;
  }

  /** SIGKILL to the process and what it runs (its own process group). */
  kill(): void {
    const pid = this.#child.pid;
    if (!pid) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Lines of a stream, one `next()` at a time; null at its end. */
function lineReader(stream: Readable): { next(): Promise<string | null> } {
  let buf = '';
  let ended = false;
  const queue: string[] = [];
  let waiter: ((line: string | null) => void) | undefined;
  const flush = () => {
    if (!waiter) return;
    if (queue.length > 0) {
      const w = waiter;
      waiter = undefined;
      w(queue.shift()!);
    } else if (ended) {
      const w = waiter;
      waiter = undefined;
      w(null);
    }
  };
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      queue.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    flush();
  });
  stream.on('end', () => {
    ended = true;
    flush();
  });
  stream.on('close', () => {
    ended = true;
    flush();
  });
  stream.on('error', () => {
    ended = true;
    flush();
  });
  return {
    next: () =>
      new Promise((resolve) => {
        waiter = resolve;
        flush();
      }),
  };
}
