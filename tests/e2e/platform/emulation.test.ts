/**
 * Issue 10: RUN steps of a foreign architecture run under binfmt_misc
 * emulation where this machine has it (Debian's qemu-user-static handlers,
 * registered by scripts/binfmt), and are refused where it has not — a
 * platform no handler emulates: a clear error naming it, nothing pushed.
 * Through the CLI, real runc, a real registry; base images are busybox
 * (the arm64 one Debian's arm64 busybox-static, from scripts/busybox-arm64).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { ARM64_BUSYBOX, HOST_ARCH, buildDockerfile, noEmulationReason, registryConfig, unemulatedPlatform } from './lib.js';

let registry: RegistryServer;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  work = await tempDir('platform-emulation');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

async function project(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

// Emulation is tested where this machine has it; the reason it is skipped otherwise shows in the test's name.
const skipEmulation =
  HOST_ARCH === 'arm64'
    ? 'the host is arm64: arm64 runs natively'
    : !existsSync(ARM64_BUSYBOX)
      ? `no arm64 busybox at ${ARM64_BUSYBOX} (run scripts/busybox-arm64)`
      : noEmulationReason('aarch64');

describe.skipIf(skipEmulation !== undefined)(`RUN steps of a foreign architecture, emulated${skipEmulation ? ` (skipped: ${skipEmulation})` : ''}`, () => {
  let base: string;
  beforeAll(async () => {
    base = (await pushBusyboxImage(registry, 'e2e/busybox-arm64', 'latest', { binaryPath: ARM64_BUSYBOX, architecture: 'arm64' })).reference;
  });

  it('--platform linux/arm64 on an arm64 base runs under qemu: uname -m says aarch64, and the pushed image is arm64', async () => {
    const dir = await project('emulated');
    const root = join(dir, 'store');
    const name = `${registry.host}/e2e/emulated:arm64`;
    const dockerfile = `FROM ${base}\nRUN uname -m > /arch && echo "ran on $(cat /arch)"\n`;
    const r = await buildDockerfile(dir, root, dockerfile, ['--platform', 'linux/arm64', '-t', name, '--push']);
    expect(r.stderr).toContain('ran on aarch64');
    expect(r.code).toBe(0);
    expect(await registryConfig(name)).toMatchObject({ architecture: 'arm64', os: 'linux' });
    // The same build (cached) into a directory: the file the emulated step wrote.
    const out = join(dir, 'out');
    const again = await buildDockerfile(dir, root, dockerfile, ['--platform', 'linux/arm64', '-o', `type=local,dest=${out}`]);
    expect(again.code).toBe(0);
    expect(await readFile(join(out, 'arch'), 'utf8')).toBe('aarch64\n');
  });

  it('without --platform an arm64-only base makes an arm64 build: its steps emulated, the image labelled arm64', async () => {
    const dir = await project('implicit');
    const name = `${registry.host}/e2e/implicit:latest`;
    const r = await buildDockerfile(dir, join(dir, 'store'), `FROM ${base}\nRUN echo "ran on $(uname -m)"\n`, ['-t', name, '--push']);
    expect(r.stderr).toContain('ran on aarch64');
    expect(r.code).toBe(0);
    expect(await registryConfig(name)).toMatchObject({ architecture: 'arm64' });
  });
});

describe('RUN steps of a platform this machine cannot execute', () => {
  it('are refused before they run: an error naming the step, the platform and how to enable emulation; nothing is pushed or exported', async () => {
    const { platform, architecture } = unemulatedPlatform();
    const base = (await pushBusyboxImage(registry, `e2e/busybox-${architecture}`, 'latest', { architecture })).reference;
    const dir = await project('refused');
    const name = `${registry.host}/e2e/refused:latest`;
    const out = join(dir, 'out');
    // The step would print ran-42; its command line does not hold that text.
    const dockerfile = `FROM ${base}\nRUN echo ran-$((40+2))\n`;
    const r = await buildDockerfile(dir, join(dir, 'store'), dockerfile, ['--platform', platform, '-t', name, '--push']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).not.toContain('ran-42');
    const error = r.stderr.split('\n').filter((l) => l.startsWith('error: ')).join('\n');
    expect(error).toContain('Dockerfile:2: [2/2] RUN echo ran-$((40+2)): ');
    expect(error).toContain(`the step is for ${platform}, which this machine cannot execute`);
    expect(error).toContain('qemu-user-static');
    expect(error).toContain('binfmt');
    expect(await registryConfig(name)).toBeUndefined();
    // Exported to a directory instead: no directory is made.
    const local = await buildDockerfile(dir, join(dir, 'store'), dockerfile, ['--platform', platform, '-o', `type=local,dest=${out}`]);
    expect(local.code).toBe(1);
    expect(await readdir(out).catch(() => 'absent')).toBe('absent');
  });
});
