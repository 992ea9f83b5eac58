/**
 * A container's root filesystem mounted in a mount namespace of its own, by
 * the one process that then runs the container (`runc run`): the mount is
 * made there and nowhere else, and it is gone when that namespace's last
 * process exits — no umount to run, and nothing left mounted on the host
 * when this process is killed, whenever that happens.
 *
 * The process is `unshare --mount --propagation private` executing a small
 * program: Perl (`ROOT_PERL`, making the mount with the mount(2) syscall
 * itself) where `perl` is on PATH and the architecture's syscall number is
 * known, else a shell script (`ROOT_SCRIPT`, running mount(8)); both behave
 * alike. It reads the mount and the command from fd 4,
 * mounts the root on the (empty) host directory `target`, reports `ready` on
 * fd 3 and waits for `go` (or `go keep`) on fd 4, runs the command (fds 3
 * and 4 closed), reports `exit <code>` on fd 3, and exits — with `go keep`,
 * only once fd 4 has closed. Meanwhile this process sees the mounted root at
 * `/proc/<pid>/root<target>`: it reads and writes the root there before the
 * command starts (the user's databases, the working directory, mount stubs)
 * and, when it kept the root, after it has exited (removing the stubs),
 * while the mount still exists. Fd 4 closing early (this process gone, or an
 * abort) makes the script exit without running the command.
 *
 * The namespace is a private copy of the host's mounts at the moment the
 * process starts: a process spawned ahead of need (a spare, so that a step
 * does not wait for one to start) is only good for a container that needs
 * no host mount made after that (the executor checks).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { Readable } from 'node:stream';
import { BktError } from '@bkt/core';

/**
 * `$0` is a label for `ps`. Fd 4 gives, one per line: the filesystem type,
 * source, options, the target, the command's argument count and each
 * argument (no value holds a newline: `RootNamespace.mount` refuses one).
 * A mount that fails is reported as `mount failed` on fd 3 (its error on
 * stderr).
 */
export const ROOT_SCRIPT = String.raw`
IFS= read -r type <&4 && IFS= read -r source <&4 && IFS= read -r options <&4 && IFS= read -r target <&4 && IFS= read -r argc <&4 || exit 1
case $argc in '' | *[!0-9]*) exit 1 ;; esac
set --
while [ "$#" -lt "$argc" ]; do
  IFS= read -r arg <&4 || exit 1
  set -- "$@" "$arg"
done
LC_ALL=C mount -n -t "$type" -o "$options" "$source" "$target" || { echo 'mount failed' >&3; exit 1; }
echo ready >&3
IFS= read -r go <&4 || exit 1
case $go in go | 'go keep') ;; *) exit 1 ;; esac
"$@" 3>&- 4<&-
rc=$?
echo "exit $rc" >&3
[ "$go" = go ] || read -r _ <&4
exit $rc
`;

/**
 * `ROOT_SCRIPT` in Perl, already running when the mount is asked for (a spare
 * namespace's process is started ahead of need): the mount is one mount(2)
 * call instead of starting mount(8), ~2 ms of each step. `$ARGV[0]` is the
 * label, `$ARGV[1]` mount(2)'s number and `$ARGV[2]` the pointer size of the
 * ABI that number is for: a perl of another ABI (`$^O` not linux, another
 * pointer size: an i386 perl on x86_64) exits 3 at once, before reading
 * anything. The mount(2) call is made only for options it passes exactly as
 * mount(8) does: `ro`, `nosuid`, `nodev`, `noexec` as flags with `key=value`
 * data, or `bind`/`rbind` alone; any other set (a flag word such as
 * `noatime`, `bind` with other options: mount(8) remounts for those) runs
 * mount(8), as `ROOT_SCRIPT`. A call returning anything but 0 or -1, or
 * returning 0 with the target's (dev, inode) unchanged, is not mount(2):
 * exit 3, no `ready`. A failed mount is `mount failed` on fd 3, as
 * `ROOT_SCRIPT`. The command gets fds 3 and 4 closed; a command killed by
 * signal N reports 128+N, as sh. It loads no module (a perl without its
 * library still runs it; IO::Handle alone would cost ~7 ms of CPU).
 */
export const ROOT_PERL = String.raw`
$^O eq 'linux' && length(pack('p', '')) == $ARGV[2] or do { print STDERR "$ARGV[0]: this perl ($^O, pointers of " . length(pack('p', '')) . " bytes) is not of the ABI mount(2)'s number is for\n"; exit 3 };
open(my $in, '<&=', 4) or exit 1;
open(my $out, '>&=', 3) or exit 1;
my $nr = $ARGV[1];
sub line { my $l = <$in>; defined $l or exit 1; chomp $l; return $l }
sub failed { print STDERR "mount: $_[0]\n"; syswrite($out, "mount failed\n"); exit 1 }
my ($type, $source, $options, $target, $argc) = map { line() } 1 .. 5;
$argc =~ /^[0-9]+$/ or exit 1;
my @args = map { line() } 1 .. $argc;
my %flag = (ro => 1, nosuid => 2, nodev => 4, noexec => 8, bind => 4096, rbind => 4096 | 16384);
my %userspace = map { $_ => 1 } qw(comment uhelper helper loop offset sizelimit encryption hash user users owner group context fscontext defcontext rootcontext);
my ($flags, @data, $mount8) = (0);
for (split /,/, $options, -1) {
  if (exists $flag{$_}) { $flags |= $flag{$_} }
  elsif (/^([a-z][a-z0-9_]*)=/ && !$userspace{$1}) { push @data, $_ }
  else { $mount8 = 1 }
}
my @before = stat($target) or failed("$target: $!");
if ($flags & 4096) {
  $mount8 = 1 if $flags & ~(4096 | 16384) or @data;
  my @from = stat($source);
  $mount8 = 1 if @from && $from[0] == $before[0] && $from[1] == $before[1];
}
if ($mount8) {
  local $ENV{LC_ALL} = 'C';
  system { 'mount' } 'mount', '-n', '-t', $type, '-o', $options, $source, $target;
  $? == 0 or failed($? == -1 ? "cannot run mount: $!" : "$target: mount exited with " . ($? >> 8));
} else {
  my $r = syscall($nr, $source, $target, $type, $flags, join(',', @data));
  failed("$target: $!") if $r == -1;
  my @after = stat($target);
  if ($r != 0 || !@after || $after[0] == $before[0] && $after[1] == $before[1]) { print STDERR "$ARGV[0]: syscall $nr returned $r and mounted nothing on $target: not mount(2)\n"; exit 3 }
}
syswrite($out, "ready\n");
my $go = line();
$go eq 'go' || $go eq 'go keep' or exit 1;
my $pid = fork();
defined $pid or exit 1;
if ($pid == 0) { close $in; close $out; exec { $args[0] } @args; print STDERR "$args[0]: $!\n"; exit 127 }
waitpid($pid, 0) == $pid or exit 1;
my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
syswrite($out, "exit $rc\n");
if ($go eq 'go keep') { 1 while defined <$in> }
exit $rc;
`;

/** `$0` of the namespace's process (either program). */
const LABEL = 'bkt-container-root';

/** mount(2)'s number and the pointer size of its ABI, by Node's `process.arch` (Linux's syscall tables). */
const MOUNT_SYSCALL: Partial<Record<string, { nr: number; pointer: number }>> = {
  x64: { nr: 165, pointer: 8 },
  arm64: { nr: 40, pointer: 8 },
  riscv64: { nr: 40, pointer: 8 },
  loong64: { nr: 40, pointer: 8 },
  ppc64: { nr: 21, pointer: 8 },
  s390x: { nr: 21, pointer: 8 },
  arm: { nr: 21, pointer: 4 },
  ia32: { nr: 21, pointer: 4 },
};

/**
 * A program the namespace's process runs. `fallback`: a Perl holder chosen
 * on its own (not forced by a test) that, when it ends before `ready` other
 * than by a failed mount, is replaced by the shell script for this process.
 */
interface Holder {
  args: string[];
  fallback: boolean;
}

const SH_HOLDER: Holder = { args: ['/bin/sh', '-c', ROOT_SCRIPT, LABEL], fallback: false };

let chosen: Holder | undefined;

/** The program the namespace's process runs (see the header), decided once per process. */
function holder(): Holder {
  if (!chosen) {
    const abi = MOUNT_SYSCALL[process.arch];
    const perl = abi ? onPath('perl') : undefined;
    chosen = abi && perl ? { args: perlArgs(perl, abi.nr, abi.pointer), fallback: true } : SH_HOLDER;
  }
  return chosen;
}

function perlArgs(perl: string, nr: number, pointer: number): string[] {
  return [perl, '-e', ROOT_PERL, LABEL, String(nr), String(pointer)];
}

/**
 * For tests: forces the shell script (`ROOT_SCRIPT`) or Perl (`ROOT_PERL`,
 * with no fallback; `abi` replaces mount(2)'s number or the pointer size),
 * or returns to the automatic choice (decided again on the next spawn).
 */
export function useRootHolder(kind: 'sh' | 'perl' | 'auto', abi: { nr?: number; pointer?: number } = {}): void {
  chosen = undefined;
  if (kind === 'sh') chosen = SH_HOLDER;
  else if (kind === 'perl') {
    const known = MOUNT_SYSCALL[process.arch];
    const perl = onPath('perl');
    if (known === undefined || !perl) throw new BktError('UNIMPLEMENTED', `no perl on PATH, or mount(2)'s number unknown for ${process.arch}`);
    chosen = { args: perlArgs(perl, abi.nr ?? known.nr, abi.pointer ?? known.pointer), fallback: false };
  }
}

/** This process's environment without Perl's variables (`PERL5OPT`, `PERL5LIB`, `PERLLIB`, …). */
function holderEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PERL')));
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!dir.startsWith('/')) continue;
    const path = `${dir}/${name}`;
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

export interface RootMount {
  type: string;
  source: string;
  options: string;
}

/**
 * The process holding a container's root mount, until `close()`. Spawned
 * ahead of need (`spawn()`: its namespace is a copy of the host's mounts of
 * that moment), given its mount and command by `mount()`.
 */
export class RootNamespace {
  readonly #stdin: boolean;
  #holder!: Holder;
  #child!: ChildProcess;
  #control!: NodeJS.WritableStream & { destroy(): void; destroyed: boolean };
  #lines!: { next(): Promise<string | null> };
  #gone!: Promise<{ code: number | null; err?: Error }>;
  #stderr = '';
  readonly #collect = (d: Buffer) => {
    if (this.#stderr.length < 4096) this.#stderr += d.toString('utf8');
  };
  #root: string | undefined;
  #exited: Promise<number> | undefined;
  #mounting = false;
  #started = false;
  #closed: Promise<void> | undefined;

  private constructor(stdin: boolean) {
    this.#stdin = stdin;
    this.#start(holder());
  }

  /** Starts the namespace's process running `h`. */
  #start(h: Holder): void {
    const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', ...h.args], {
      stdio: [this.#stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
      // Not the caller's directory: nothing of the host is held that the namespace does not need.
      cwd: '/',
      // Perl's own settings (PERL5OPT loads modules, PERL5LIB finds them) are not the program's.
      env: holderEnv(),
    });
    this.#holder = h;
    this.#child = child;
    this.#stderr = '';
    this.#control = child.stdio[4] as NodeJS.WritableStream & { destroy(): void; destroyed: boolean };
    this.#control.on('error', () => {});
    child.stderr!.on('data', this.#collect);
    this.#lines = lineReader(child.stdio[3] as Readable);
    this.#gone = new Promise((resolve) => {
      child.on('error', (err) => resolve({ code: null, err }));
      child.on('close', (code) => resolve({ code }));
    });
  }

  /**
   * A new process in a new mount namespace, waiting for `mount()`. A
   * `spare` does not keep this process running until it is `take()`n.
   */
  static spawn(opts: { stdin?: boolean; spare?: boolean } = {}): RootNamespace {
    const ns = new RootNamespace(!!opts.stdin);
    if (opts.spare) ns.#ref(false);
    return ns;
  }

  /** A spare put to use: it keeps this process running again. */
  take(): RootNamespace {
    this.#ref(true);
    return this;
  }

  #ref(on: boolean): void {
    const c = this.#child;
    on ? c.ref() : c.unref();
    for (const stream of [c.stdout, c.stderr, c.stdio[3], c.stdio[4]] as ({ ref?(): void; unref?(): void } | null)[]) {
      on ? stream?.ref?.() : stream?.unref?.();
    }
  }

  /** The spawned process: its stdout and stderr are the command's (and stdin, when spawned with `stdin`). */
  get child(): ChildProcess {
    return this.#child;
  }

  /** Whether it still waits for `mount()`. */
  get idle(): boolean {
    return !this.#mounting && this.#child.exitCode === null && this.#child.signalCode === null && !this.#control.destroyed;
  }

  /** The mounted root as this process reaches it (after `mount()`). */
  get root(): string {
    if (!this.#root) throw new BktError('INTERNAL', 'the root is not mounted yet');
    return this.#root;
  }

  /** Resolves with the command's exit status once it has exited (rejects when it never ran). */
  get exited(): Promise<number> {
    if (!this.#exited) throw new BktError('INTERNAL', 'the root is not mounted yet');
    return this.#exited;
  }

  /**
   * Mounts `mount` on `target` in its namespace and resolves once it is
   * there; `cmd args…` runs there on `start()`. A mount that fails is a
   * `BktError('INTERNAL')` quoting the mount's error; `what` names the container.
   */
  async mount(mount: RootMount, target: string, cmd: string, args: string[], what: string): Promise<void> {
    if (!this.idle) throw new BktError('INTERNAL', `the process for the root of ${what} is not available`);
    this.#mounting = true;
    const values = [mount.type, mount.source, mount.options, target, String(args.length + 1), cmd, ...args];
    const bad = values.find((v) => v.includes('\n') || v.includes('\0'));
    if (bad !== undefined) {
      this.#control.destroy();
      throw new BktError('INVALID_ARGUMENT', `cannot mount the root of ${what}: a value holds a newline (${JSON.stringify(bad)})`, { attribute: 'rootfsMount' });
    }
    for (;;) {
      this.#control.write(values.map((v) => `${v}\n`).join(''));
      const first = await Promise.race([this.#lines.next(), this.#gone.then(() => null)]);
      if (first === 'ready') break;
      this.#control.destroy();
      const { code, err } = await this.#gone;
      const stderr = this.#stderr.trim();
      // A Perl holder that ended other than by a failed mount (a perl it cannot run on, a wrapper that is not perl): the
      // shell script from now on, and this mount once more with it. unshare's own failure would be the script's too.
      if (this.#holder.fallback && first !== 'mount failed' && !err && !stderr.startsWith('unshare:')) {
        if (chosen === this.#holder) chosen = SH_HOLDER;
        this.#start(SH_HOLDER);
        continue;
      }
      const why = err ? `cannot run unshare: ${err.message}` : stderr || `exit ${code}`;
      throw new BktError('INTERNAL', `cannot mount the root filesystem of ${what}: ${why}`, {}, err ? { cause: err } : undefined);
    }
    this.#child.stderr!.off('data', this.#collect);
    this.#root = `/proc/${this.#child.pid}/root${target}`;
    this.#exited = (async () => {
      const line = await Promise.race([this.#lines.next(), this.#gone.then(() => null)]);
      const m = line ? /^exit (\d+)$/.exec(line) : null;
      if (m) return Number(m[1]);
      const { code, err } = await this.#gone;
      throw new BktError('INTERNAL', `the process holding the root of ${what} ended early (${err?.message ?? `exit ${code}`})`);
    })();
    this.#exited.catch(() => {});
  }

  /**
   * Runs the command. With `keepRoot` the root stays mounted (and `root`
   * readable) after the command has exited, until `close()`; without, the
   * process exits with the command, and its namespace and the mount end
   * then.
   */
  start(opts: { keepRoot?: boolean } = {}): void {
    if (this.#started || !this.#root) return;
    this.#started = true;
    this.#control.write(opts.keepRoot ? 'go keep\n' : 'go\n');
  }

  /**
   * Lets the process exit (without running the command when it has not
   * started) and waits for it: the root is unmounted once its namespace's
   * last process is gone. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      // Waited for: a spare's process keeps this one running again until it is gone.
      this.#ref(true);
      this.#control.destroy();
      const timer = setTimeout(() => this.kill(), 10_000);
      this.#closed = this.#gone.then(() => clearTimeout(timer));
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
