/**
 * `bkt build --call` through bktd: the CLI is a client-side frontend (as
 * buildx's --call) — a Control.Solve with no frontend, then LLBBridge.Solve
 * of the Dockerfile frontend with its requestid, whose answer comes back in
 * the result's metadata. The answers equal the daemonless ones.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';
import { startBktd, type RunningDaemon } from '../daemon/lib.js';

let work: string;
let ctx: string;
let daemon: RunningDaemon;
let addr: string;

beforeAll(async () => {
  work = await tempDir('gateway-cli-call');
  ctx = join(work, 'ctx');
  await mkdir(ctx);
  await writeFile(
    join(ctx, 'Dockerfile'),
    ['# base is where it starts', 'FROM scratch as base', '# VERSION is the release', 'ARG VERSION=1.0', 'COPY f /', '', '# final is what ships', 'FROM base AS final', 'CMD echo hi', ''].join('\n'),
  );
  await writeFile(join(ctx, 'f'), 'x\n');
  addr = `unix://${join(work, 'bktd.sock')}`;
  daemon = await startBktd(['--addr', addr, '--root', join(work, 'daemon-root')], { cwd: work });
});

afterAll(async () => {
  await daemon?.stop();
  if (work) await removeDir(work);
});

describe('bkt build --call through bktd', () => {
  for (const call of ['targets', 'outline', 'outline,format=json']) {
    it(`--call ${call} answers as daemonless`, async () => {
      const local = await bkt(['build', '--root', join(work, 'store'), '--call', call, ctx], { cwd: work });
      const remote = await bkt(['build', '--addr', addr, '--call', call, ctx], { cwd: work });
      expect(local.code, local.stderr).toBe(0);
      expect(remote.code, remote.stderr).toBe(0);
      expect(remote.stdout).toBe(local.stdout);
      expect(remote.stdout.length).toBeGreaterThan(0);
    });
  }

  it('--check reports the same warnings and exits 1 as daemonless', async () => {
    const local = await bkt(['build', '--root', join(work, 'store'), '--check', ctx], { cwd: work });
    const remote = await bkt(['build', '--addr', addr, '--check', ctx], { cwd: work });
    expect(local.code).toBe(1);
    expect(remote.code).toBe(1);
    expect(remote.stdout).toBe(local.stdout);
    expect(remote.stdout).toContain('FromAsCasing');
  });

  it('a frontend error (an unknown --target) is the same error', async () => {
    const remote = await bkt(['build', '--addr', addr, '--call', 'outline', '--target', 'nope', ctx], { cwd: work });
    expect(remote.code).toBe(1);
    expect(remote.stderr).toContain('nope');
  });
});
