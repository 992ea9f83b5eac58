/**
 * The container watchdog with real runc: a worker process (the built
 * dist/, in a child Node process) runs a sensitive container and is killed
 * with SIGKILL; its watchdog stops the container and removes its bundle and
 * scratch dir within seconds, and leaves alone a container of this (live)
 * process on the same runc root. `exit` stops a watchdog without it acting.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuncExecutor } from './runc.js';
import { isAlive, mountTmpfs } from './sys.js';
import { ContainerWatchdog, processStartTime, WATCHDOG_NAME, WATCHDOG_SCRIPT } from './watchdog.js';

const DIST = resolve(import.meta.dirname, '../dist/runc-executor.js');
let dir: string;
let rootfs: string;

beforeAll(async () => {
  if (!existsSync(DIST)) throw new Error('worker-runc is not built: run `npm run build` first');
  dir = await mkdtemp(join(tmpdir(), 'bkt-watchdog-'));
  rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
});
afterAll(async () => {
  // A failed test may leave mounts (a secret tmpfs) and containers behind: clear them before removing the directory.
  for (const runcRoot of [join(dir, 'state/state'), join(dir, 'state-close/state')]) {
    if (!existsSync(runcRoot)) continue;
    for (const id of runcList(runcRoot)) execFileSync('runc', ['--root', runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
  }
  for (const mount of mountsUnder(dir).sort().reverse()) execFileSync('umount', ['-l', mount]);
  await rm(dir, { recursive: true, force: true });
});

/** The container ids in `runcRoot`; asked again when a container's state went away while runc listed it (its deletion racing the listing). */
function runcList(runcRoot: string): string[] {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n').filter(Boolean);
    } catch (err) {
      if (attempt >= 5 || !/no such file or directory/.test(String((err as { stderr?: unknown }).stderr))) throw err;
    }
  }
}

function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === path || p.startsWith(`${path}/`));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A worker process: runs container `w-<pid>-1` (sensitive: its bundle on a
 * tmpfs, a secret env) with a scratch dir holding a secret tmpfs, prints
 * `started <id> <watchdog pid>` once runc runs, then waits to be killed.
 */
const WORKER = `
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { RuncExecutor } from ${JSON.stringify(DIST)};
const [stateDir, runDirs, rootfs] = process.argv.slice(2);
const id = 'w-' + process.pid + '-1';
const executor = new RuncExecutor({ stateDir, runDirs });
const scratch = join(runDirs, id, 'secrets');
await mkdir(scratch, { recursive: true });
execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', scratch]);
await writeFile(join(scratch, 'secret-1'), 'watchdog-secret');
executor.run(
  { id, rootfs, mounts: [], network: 'none', security: 'sandbox', sensitive: true,
    process: { args: ['/bin/sh', '-c', 'echo up; sleep 1000'], env: ['TOKEN=watchdog-secret'] } },
  { stdout: () => console.log('started ' + id + ' ' + executor.watchdogPid()) },
);
`;

describe('container watchdog', () => {
  it("stops a SIGKILLed worker's containers within seconds, removes its secrets, and spares a live process's container", async () => {
    const stateDir = join(dir, 'state');
    const runDirs = join(dir, 'mounts');
    const runcRoot = join(stateDir, 'state');
    await mkdir(runDirs, { recursive: true });
    await writeFile(join(dir, 'worker.mjs'), WORKER);

    // A bystander: this process's own container on the same runc root, running throughout.
    const mine = new RuncExecutor({ stateDir, runDirs });
    const bystanderId = `t-${process.pid}-bystander`;
    const stopBystander = new AbortController();
    let bystanderUp!: () => void;
    const bystanderStarted = new Promise<void>((r) => (bystanderUp = r));
    const bystander = mine.run(
      { id: bystanderId, rootfs, mounts: [], network: 'none', security: 'sandbox', process: { args: ['/bin/sh', '-c', 'echo up; sleep 1000'], env: [] } },
      { signal: stopBystander.signal, stdout: () => bystanderUp() },
    );
    await bystanderStarted;

    const worker = spawn(process.execPath, [join(dir, 'worker.mjs'), stateDir, runDirs, rootfs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    worker.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    // The whole line: a pipe may deliver it in more than one chunk.
    for (let i = 0; i < 400 && !/started \S+ \d+\n/.test(out); i++) await sleep(25);
    const [, id, watchdogPid] = /started (\S+) (\d+)\n/.exec(out) ?? [];
    expect(id, out).toBe(`w-${worker.pid}-1`);
    expect(isAlive(Number(watchdogPid))).toBe(true);
    expect(runcList(runcRoot).sort()).toEqual([bystanderId, id].sort());
    expect(mountsUnder(join(stateDir, 'bundles', id))).toHaveLength(1);

    const killedAt = Date.now();
    worker.kill('SIGKILL');
    while (runcList(runcRoot).includes(id) && Date.now() - killedAt < 10_000) await sleep(50);
    const stoppedMs = Date.now() - killedAt;
    expect(runcList(runcRoot)).toEqual([bystanderId]);
    expect(stoppedMs).toBeLessThan(5000);
    for (let i = 0; i < 100 && isAlive(Number(watchdogPid)); i++) await sleep(50);
    expect(isAlive(Number(watchdogPid))).toBe(false);
    // Its bundle (the secret env) and scratch dir (the secret file) are unmounted and gone; the bystander's bundle stays.
    expect(existsSync(join(stateDir, 'bundles', id))).toBe(false);
    expect(existsSync(join(runDirs, id))).toBe(false);
    expect(mountsUnder(stateDir)).toEqual([]);
    expect(mountsUnder(runDirs)).toEqual([]);
    expect(existsSync(join(stateDir, 'bundles', bystanderId))).toBe(true);

    stopBystander.abort();
    await expect(bystander).rejects.toMatchObject({ code: 'CANCELLED' });
    await mine.close();
    console.log(`watchdog: container gone ${stoppedMs} ms after SIGKILL`);
  });

  it('a closed executor stops its watchdog, which then leaves everything as it is', async () => {
    const stateDir = join(dir, 'state-close');
    const executor = new RuncExecutor({ stateDir });
    const id = `t-${process.pid}-close`;
    const code = await executor.run({ id, rootfs, mounts: [], network: 'none', security: 'sandbox', process: { args: ['/bin/true'], env: [] } });
    expect(code).toBe(0);
    const watchdog = executor.watchdogPid();
    expect(watchdog && isAlive(watchdog)).toBe(true);
    // A bundle named like ours (as a running container's would be): an acting watchdog would remove it.
    const bundle = join(stateDir, 'bundles', `t-${process.pid}-kept`);
    await mkdir(bundle, { recursive: true });
    await mountTmpfs(bundle);
    try {
      await executor.close();
      for (let i = 0; i < 100 && isAlive(watchdog!); i++) await sleep(20);
      expect(isAlive(watchdog!)).toBe(false);
      expect(mountsUnder(bundle)).toEqual([bundle]);
    } finally {
      execFileSync('umount', [bundle]);
    }
  });
});

/** A stand-in for a `runc run`: a sleep whose command name holds spaces and parentheses (as a process reusing a pid might). */
function startRun(): { child: ChildProcess; pid: number; start: string } {
  const bin = join(dir, 'run) 1 2 (x');
  if (!existsSync(bin)) copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), bin);
  const child = spawn(bin, ['1000'], { stdio: 'ignore' });
  const pid = child.pid!;
  const start = processStartTime(pid);
  expect(start).toMatch(/^\d+$/);
  return { child, pid, start: start! };
}

async function stopRun(run: { child: ChildProcess }): Promise<void> {
  if (run.child.exitCode !== null || run.child.signalCode !== null) return;
  const exited = new Promise((r) => run.child.once('exit', r));
  run.child.kill('SIGKILL');
  await exited;
}

/** The watchdog script given `lines`, then end of file (its owner gone); its runc root does not exist, it has no directories. */
function watchdogGiven(lines: string[]): { exited: Promise<number> } {
  const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, WATCHDOG_NAME, 'runc', join(dir, 'no-runc-root'), String(process.pid)], {
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  const exited = new Promise<number>((r) => child.once('exit', () => r(Date.now())));
  child.stdin!.end(lines.map((l) => `${l}\n`).join(''));
  return { exited };
}

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([p.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer);
  return settled;
}

describe('watchdog script', () => {
  it('at end of file waits for the runs it was told about, not for those it was told have ended', async () => {
    const [a, b, c] = [startRun(), startRun(), startRun()];
    try {
      const watchdog = watchdogGiven([`runc ${a.pid} ${a.start}`, `runc ${b.pid} ${b.start}`, `runc ${c.pid} ${c.start}`, `done ${a.pid} ${a.start}`, `done ${c.pid} ${c.start}`]);
      // b still runs: the watchdog waits for it.
      expect(await settlesWithin(watchdog.exited, 800)).toBe(false);
      const stoppedAt = Date.now();
      await stopRun(b);
      // a and c still run, but have ended as far as the watchdog knows: it stops polling at once (every 0.2 s), not after 10 s.
      expect(await settlesWithin(watchdog.exited, 5000)).toBe(true);
      expect((await watchdog.exited) - stoppedAt).toBeLessThan(1500);
    } finally {
      await Promise.all([a, b, c].map(stopRun));
    }
  });

  it('does not wait for a process that got the pid of a run it was told about (another start time)', async () => {
    const other = startRun();
    try {
      const startedAt = Date.now();
      // The run that had this pid started a tick earlier and is gone; the pid is now another process's.
      const watchdog = watchdogGiven([`runc ${other.pid} ${BigInt(other.start) - 1n}`, `runc ${other.pid}`, `runc x${other.pid} ${other.start}`]);
      expect(await settlesWithin(watchdog.exited, 5000)).toBe(true);
      expect((await watchdog.exited) - startedAt).toBeLessThan(1500);
    } finally {
      await stopRun(other);
    }
  });
});

/**
 * Perl printing what is waiting in process $ARGV[0]'s stdin, without waiting: it takes a copy of that descriptor
 * (pidfd_open, pidfd_getfd: 434 and 438 on every architecture but alpha) and reads while something is there.
 */
const READ_STDIN_OF = String.raw`
my $pidfd = syscall(434, $ARGV[0] + 0, 0);
$pidfd >= 0 or die "pidfd_open: $!\n";
my $fd = syscall(438, $pidfd, 0, 0);
$fd >= 0 or die "pidfd_getfd: $!\n";
open(my $in, '<&=', $fd) or die "open: $!\n";
my $bits = '';
vec($bits, $fd, 1) = 1;
while (select(my $ready = $bits, undef, undef, 0) > 0) {
  my $n = sysread($in, my $buf, 4096);
  last unless $n;
  print $buf;
}
`;

describe('ContainerWatchdog', () => {
  it("names a run by its pid and start time, and says it has ended once it has exited", async () => {
    const watchdog = new ContainerWatchdog({ runc: 'runc', runcRoot: join(dir, 'no-runc-root'), dirs: [] });
    watchdog.ensureRunning();
    const pid = watchdog.pid!;
    const runs: ReturnType<typeof startRun>[] = [];
    try {
      // Stopped, the script reads nothing: what it was told stays in its stdin (a socket), read here through a copy of that descriptor.
      process.kill(pid, 'SIGSTOP');
      runs.push(startRun(), startRun());
      for (const run of runs) watchdog.watchRunc(run.child);
      await stopRun(runs[0]!);
      const [a, b] = runs;
      const expected = `runc ${a!.pid} ${a!.start}\nrunc ${b!.pid} ${b!.start}\ndone ${a!.pid} ${a!.start}\n`;
      let told = '';
      for (let i = 0; i < 50 && told.length < expected.length; i++) {
        if (i > 0) await sleep(20);
        told += execFileSync('perl', ['-e', READ_STDIN_OF, String(pid)], { encoding: 'latin1' });
      }
      expect(told).toBe(expected);
    } finally {
      await Promise.all(runs.map(stopRun));
      process.kill(pid, 'SIGKILL');
    }
  });
});
