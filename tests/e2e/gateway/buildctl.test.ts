/**
 * BuildKit's own client driving a frontend image through bktd:
 * `buildctl build --frontend gateway.v0 --opt source=IMAGE` where buildctl is
 * on PATH. Skipped, with the reason in the suite name, where it is absent
 * (it is not installed on this project's machines).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { startBktd, type RunningDaemon } from '../daemon/lib.js';
import { pushFrontendImage, type FrontendImage } from './lib.js';

function buildctlPath(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v buildctl'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const BUILDCTL = buildctlPath();
const suite = BUILDCTL ? 'buildctl build --frontend gateway.v0 against bktd' : 'buildctl build --frontend gateway.v0 against bktd (skipped: buildctl is not on PATH)';

describe.skipIf(!BUILDCTL)(suite, () => {
  let work: string;
  let socket: string;
  let daemon: RunningDaemon;
  let registry: RegistryServer;
  let frontend: FrontendImage;

  beforeAll(async () => {
    registry = await startRegistry();
    frontend = await pushFrontendImage(registry.host, 'e2e/frontend', 'buildctl');
    work = await tempDir('gateway-buildctl');
    socket = join(work, 'bktd.sock');
    daemon = await startBktd(['--addr', `unix://${socket}`, '--root', join(work, 'root')], { cwd: work });
  });

  afterAll(async () => {
    await daemon?.stop();
    await registry?.stop();
    if (work) await removeDir(work);
  });

  it('builds the frontend image with the context and exports its result', async () => {
    const ctx = join(work, 'ctx');
    await mkdir(ctx);
    await writeFile(join(ctx, 'message.txt'), 'hello from buildctl\n');
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\n');
    const out = join(work, 'out');
    const r = await execa(
      BUILDCTL!,
      ['--addr', `unix://${socket}`, 'build', '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--output', `type=local,dest=${out}`],
      { reject: false, all: true, timeout: 170_000 },
    );
    expect(r.exitCode, String(r.all)).toBe(0);
    expect(await readFile(join(out, 'greeting.txt'), 'utf8')).toBe('frontend says: HELLO FROM BUILDCTL\n');
  });
});
