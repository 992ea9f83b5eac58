/**
 * The container watchdog with real runc: a worker process (the built
 * dist/, in a child Node process) runs a sensitive container and is killed
 * with SIGKILL; its watchdog stops the container and removes its bundle and
 * scratch dir within seconds, and leaves alone a container of this (live)
 * process on the same runc root. `exit` stops a watchdog without it acting.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuncExecutor } from './runc.js';
import { isAlive, mountTmpfs } from './sys.js';

const DIST = resolve(import.meta.dirname, '../dist/index.js');
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
