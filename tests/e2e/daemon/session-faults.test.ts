/**
 * Clients that misbehave on their session (issue 11), against one bktd:
 * a client process killed (SIGKILL) in the middle of sending its context
 * fails its own build — recorded as failed in the history, its staged
 * files gone — while another client's build running at the same time
 * succeeds and the daemon serves on.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { control } from '@bkt/api';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { startClient } from './clients.js';
import { Control, runcContainers, startBktd, type RunningDaemon } from './lib.js';

let work: string;
let root: string;
let address: string;
let daemon: RunningDaemon;
let rpc: Control;
let registry: RegistryServer;
let busybox: PushedImage;

beforeAll(async () => {
  work = await tempDir('daemon-session-faults');
  root = join(work, 'root');
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  address = `unix://${join(work, 'bktd.sock')}`;
  daemon = await startBktd(['--addr', address, '--root', root], { cwd: work });
  rpc = new Control(address);
});

afterAll(async () => {
  rpc?.close();
  if (daemon) expect(await daemon.stop(), daemon.output()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

/** A directory holding `Dockerfile` (and `files`), for a client's context and dockerfile. */
async function project(name: string, dockerfile: string[], files: Record<string, Buffer | string> = {}): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), `${dockerfile.join('\n')}\n`);
  for (const [path, data] of Object.entries(files)) await writeFile(join(dir, path), data);
  return dir;
}

/** What `read` gives once it is empty, or after 10 s (cleanup runs just after a build's history record completes). */
async function settled<T>(read: () => Promise<T[]>): Promise<T[]> {
  let items = await read();
  for (let i = 0; i < 100 && items.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    items = await read();
  }
  return items;
}

/** The history record of `ref` once the build completed (the listener's stream ends with it). */
async function completed(ref: string): Promise<control.BuildHistoryRecord> {
  const events = await rpc.collect(rpc.listenBuildHistory({ Ref: ref }));
  const last = events.at(-1);
  expect(last?.type, JSON.stringify(events)).toBe(control.BuildHistoryEventType.COMPLETE);
  return last!.record!;
}

describe('a session whose client disappears mid-transfer', () => {
  it('fails that build alone: another client builds meanwhile, the daemon lives on', async () => {
    const big = Buffer.alloc(32 << 20, 'x');
    const victimDir = await project('victim', [`FROM ${busybox.reference}`, 'COPY . /ctx'], { 'big.bin': big, 'small.txt': 'small\n' });
    const otherDir = await project('other', [`FROM ${busybox.reference}`, 'COPY small.txt /', 'RUN sleep 3 && cat /small.txt > /copied', 'FROM scratch', 'COPY --from=0 /copied /'], {
      'small.txt': 'the other build\n',
    });
    const df = (dir: string, out: string) => ({
      address,
      localDirs: { context: dir, dockerfile: dir },
      frontend: 'dockerfile.v0',
      frontendAttrs: { filename: 'Dockerfile' },
      exporters: [{ Type: 'local', Attrs: { dest: out } }],
      outputs: { 0: { type: 'dir' as const, dest: out } },
    });
    const other = await startClient(work, { ...df(otherDir, join(work, 'out-other')), ref: 'e2esessionfaultsother001' });
    const victim = await startClient(work, { ...df(victimDir, join(work, 'out-victim')), ref: 'e2esessionfaultsvictim01', stallAfterBytes: 1 << 20 });

    const stalled = await victim.next('stalled');
    expect(stalled).toMatchObject({ dir: 'context', path: 'big.bin' });
    expect(other.events.some((e) => e.event === 'done'), 'the other build is still running').toBe(false);
    victim.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');

    // The victim's build fails; the other one, running meanwhile, succeeds.
    const failed = await completed('e2esessionfaultsvictim01');
    expect(failed.error?.code, JSON.stringify(failed.error)).toBeGreaterThan(0);
    const done = await other.done();
    expect(done.ok, JSON.stringify(done)).toBe(true);
    expect(await readFile(join(work, 'out-other', 'copied'), 'utf8')).toBe('the other build\n');
    expect((await completed('e2esessionfaultsother001')).error).toBeUndefined();

    // The daemon lives on: it answers, and nothing of the failed transfer is left in its temp space.
    expect((await rpc.info()).buildkitVersion?.package).toBe('@bkt/server');
    expect(daemon.proc.exitCode).toBeNull();
    expect(await settled(() => readdir(join(root, 'tmp')))).toEqual([]);
    expect(await runcContainers(root)).toEqual([]);
  });
});
