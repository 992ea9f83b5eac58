/**
 * The container watchdog: a small shell process that stops this process's
 * runc containers once this process is gone, however it went (`kill -9`
 * included), so that no container outlives its owner by more than a few
 * seconds and no secret stays in a bundle.
 *
 * One watchdog runs per `RuncExecutor` (per runc root) that has started a
 * container. It reads a pipe from us; nothing but us holds the pipe's write
 * end (libuv opens every pipe close-on-exec), so the pipe reaches end of file
 * exactly when this process has died. Its own session (`detached`) keeps it
 * out of our process group: a signal to the group (Ctrl-C, `kill -9 -PGID`)
 * does not reach it. Node cannot set PR_SET_PDEATHSIG on a child; the pipe is
 * the portable equivalent.
 *
 * The protocol, one line each: `runc <pid> <start>` names a `runc run` we
 * started (a container may still appear while it lives), `<start>` being its
 * start time (field 22 of /proc/<pid>/stat); `done <pid> <start>` says that
 * process has exited, and the watchdog forgets it (it holds only the runs
 * that may still be running, however long we live); `exit` stops the
 * watchdog without it doing anything (we are alive and clean up ourselves).
 * A line of another form is ignored.
 *
 * At end of file it acts only on container ids of the form
 * `<name>-<our pid>-<rest>` (`name` without a dash), the form `RuncExecutor`
 * requires, so other processes' containers on the same root are never
 * touched. It repeats `runc kill KILL` + `runc delete --force` on each of
 * ours until none is listed and no `runc run` it was told about (and not
 * told has ended) still runs (at most about 10 s) — a pid whose process has
 * another start time is another process, which got the pid after our run
 * ended, and is not waited for — then, in each directory it was given (bundles,
 * per-run scratch dirs), unmounts everything at or under each entry named by
 * one of our ids (deepest first) and removes it without crossing into another
 * file system.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The script; `$0` is a label for `ps`, `$1` runc, `$2` runc's `--root`, `$3` the owner's pid, `$4…` the directories. */
export const WATCHDOG_SCRIPT = String.raw`
runc=$1 root=$2 owner=$3
shift 3

# Whether id $1 is <name>-<owner>-<rest> (name without a dash, rest not empty).
ours() {
  case $1 in '' | -* | *[!A-Za-z0-9_.-]*) return 1 ;; esac
  old_ifs=$IFS
  IFS=-
  set -- $1
  IFS=$old_ifs
  [ "$#" -ge 3 ] && [ "$2" = "$owner" ]
}

# The runs that may still be running, as <pid>:<start time> words.
runcs=
while read -r command pid start extra; do
  case $command in
    exit) exit 0 ;;
    runc | done) ;;
    *) continue ;;
  esac
  case $pid in '' | *[!0-9]*) continue ;; esac
  case $start in '' | *[!0-9]*) continue ;; esac
  [ -z "$extra" ] || continue
  if [ "$command" = runc ]; then
    runcs="$runcs $pid:$start"
  else
    left=
    for run in $runcs; do
      [ "$run" = "$pid:$start" ] || left="$left $run"
    done
    runcs=$left
  fi
done

# End of file: the owner is gone.
stop_containers() {
  # No state directory, no containers (and runc list would create it, after its owner removed the store).
  [ -d "$root" ] || return 0
  for id in $("$runc" --root "$root" list -q 2>/dev/null); do
    ours "$id" || continue
    "$runc" --root "$root" kill "$id" KILL >/dev/null 2>&1
    "$runc" --root "$root" delete --force "$id" >/dev/null 2>&1
  done
}

# Whether a runc run we were told about still runs: not a zombie, nor another process that got its pid (another start time).
runc_running() {
  for run in $runcs; do
    old_ifs=$IFS
    IFS=:
    set -- $run
    start=$2
    stat=
    IFS= read -r stat 2>/dev/null < "/proc/$1/stat"
    # The fields after the command's name (which may hold spaces and parentheses) follow its last ')'.
    IFS=')'
    set -- $stat
    fields=
    for fields; do :; done
    IFS=' '
    set -- $fields
    IFS=$old_ifs
    # $1 is field 3 (the state), the 20th field 22 (the start time).
    [ "$#" -ge 20 ] || continue
    state=$1
    shift 19
    [ "$1" = "$start" ] || continue
    [ "$state" = Z ] || return 0
  done
  return 1
}

# Mount points at or under $1, deepest first (mountinfo's octal escapes decoded).
mounts_under() {
  awk -v dir="$1" '
    function decode(s,   out, c) {
      out = ""
      while (match(s, /\[0-7][0-7][0-7]/)) {
        c = substr(s, RSTART + 1, 3)
        out = out substr(s, 1, RSTART - 1) sprintf("%c", substr(c, 1, 1) * 64 + substr(c, 2, 1) * 8 + substr(c, 3, 1))
        s = substr(s, RSTART + 4)
      }
      return out s
    }
    { p = decode($5); if (p == dir || index(p, dir "/") == 1) print p }
  ' /proc/self/mountinfo | sort -r
}

set -f
tries=0
while :; do
  stop_containers
  runc_running || break
  tries=$((tries + 1))
  [ "$tries" -lt 50 ] || break
  sleep 0.2
done
stop_containers
set +f

for dir in "$@"; do
  cd "$dir" 2>/dev/null || continue
  for name in *; do
    ours "$name" || continue
    mounts_under "$dir/$name" | while IFS= read -r mount; do
      umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null
    done
    rm -rf --one-file-system "$dir/$name"
  done
  cd /
done
`;

/** The label the watchdog shows as its `$0` (in `ps`). */
export const WATCHDOG_NAME = 'bkt-container-watchdog';

export interface ContainerWatchdogOptions {
  /** The runc binary. */
  runc: string;
  /** runc's `--root`. */
  runcRoot: string;
  /** Directories whose entries are named by container id (bundles, scratch dirs): ours are removed after a crash. */
  dirs: string[];
}

export class ContainerWatchdog {
  readonly #opts: ContainerWatchdogOptions;
  #child: ChildProcess | undefined;

  constructor(opts: ContainerWatchdogOptions) {
    this.#opts = opts;
  }

  /** The watchdog's pid while it runs. */
  get pid(): number | undefined {
    return this.#running() ? this.#child?.pid : undefined;
  }

  /**
   * Starts the watchdog unless it runs. The process exists when this returns,
   * so a container started afterwards is covered.
   */
  ensureRunning(): void {
    if (this.#running()) return;
    const { runc, runcRoot, dirs } = this.#opts;
    const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, WATCHDOG_NAME, runc, runcRoot, String(process.pid), ...dirs], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
      // Not the caller's directory: a watchdog must not keep a mount busy.
      cwd: '/',
    });
    child.on('error', () => {});
    child.stdin!.on('error', () => {});
    // It must not keep this process alive.
    child.unref();
    (child.stdin as unknown as { unref(): void }).unref();
    this.#child = child;
  }

  /**
   * Names the process running a `runc run` (until it exits, a container of
   * ours may still appear), by its pid and start time; once it has exited,
   * the watchdog is told to forget it. Call right after spawning `child`,
   * before this process's event loop may have reaped it (its pid is still
   * its own then, a zombie's at worst).
   */
  watchRunc(child: ChildProcess): void {
    const pid = child.pid;
    if (!pid || child.exitCode !== null || child.signalCode !== null || !this.#running()) return;
    const start = processStartTime(pid);
    if (start === undefined) return;
    const watchdog = this.#child!;
    watchdog.stdin!.write(`runc ${pid} ${start}\n`);
    // Told only to the watchdog that was told of it (a stopped one's pipe is closed; a new one never knew it).
    child.once('exit', () => {
      if (this.#child === watchdog && this.#running()) watchdog.stdin!.write(`done ${pid} ${start}\n`);
    });
  }

  /** Stops the watchdog without it touching anything; the next `ensureRunning` starts a new one. */
  stop(): void {
    if (this.#running()) this.#child!.stdin!.end('exit\n');
    this.#child = undefined;
  }

  #running(): boolean {
    const c = this.#child;
    return !!c && c.exitCode === null && c.signalCode === null && !c.stdin!.destroyed && c.stdin!.writable;
  }
}

/** Field 22 of /proc/<pid>/stat: the process's start time (clock ticks after boot); undefined when it cannot be read. */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The fields after the command's name (which may hold spaces and parentheses) follow its last ')': field 3 first.
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return start && /^\d+$/.test(start) ? start : undefined;
}
