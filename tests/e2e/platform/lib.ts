/**
 * Helpers of the platform end-to-end tests (issue 10): what this machine can
 * emulate, read from binfmt_misc independently of the worker's own
 * detection; Debian's arm64 busybox (fetched by scripts/busybox-arm64); a
 * Dockerfile build through the CLI; and what a registry holds for a tag.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { REPO, type RunResult } from '../helpers.js';
import { bktEnv } from '../images/lib.js';

const run = promisify(execFile);

/** Where scripts/busybox-arm64 puts Debian's arm64 busybox-static binary. */
export const ARM64_BUSYBOX = join(REPO, 'tests/e2e/.tmp/foreign/busybox-arm64');

/** The host's architecture as OCI names it. */
export const HOST_ARCH = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;

/**
 * Why the kernel cannot run binaries of qemu's `arch` (`aarch64`, `s390x`, …)
 * inside a container, or undefined when it can: its binfmt_misc handler
 * `qemu-<arch>` is registered, enabled and has the F flag.
 */
export function noEmulationReason(qemuArch: string): string | undefined {
  const entry = `/proc/sys/fs/binfmt_misc/qemu-${qemuArch}`;
  if (!existsSync(entry)) return `no binfmt_misc handler ${entry} (run scripts/binfmt after installing qemu-user-static)`;
  const text = readFileSync(entry, 'utf8');
  if (!/^enabled$/m.test(text)) return `${entry} is disabled`;
  if (!/^flags: .*F/m.test(text)) return `${entry} lacks the F flag, so it does not work inside a container`;
  return undefined;
}

/** Linux platforms with their qemu names, tried in order for a platform this machine does not emulate. */
const REFUSAL_CANDIDATES: [platform: string, qemuArch: string][] = [
  ['linux/s390x', 's390x'],
  ['linux/ppc64le', 'ppc64le'],
  ['linux/riscv64', 'riscv64'],
  ['linux/mips64le', 'mips64el'],
];

/**
 * A linux platform of another architecture than the host's that this
 * machine does not emulate; where every candidate is emulated (scripts/binfmt
 * registers all of Debian's handlers), `linux/arm64be`, which Debian's
 * qemu-user-static has no handler for and no worker maps.
 */
export function unemulatedPlatform(): { platform: string; architecture: string } {
  const found = REFUSAL_CANDIDATES.find(([p, qemu]) => !p.endsWith(`/${HOST_ARCH}`) && noEmulationReason(qemu) !== undefined);
  const platform = found?.[0] ?? 'linux/arm64be';
  return { platform, architecture: platform.split('/')[1]! };
}

/** `bkt build` of the Dockerfile `text` (written to `dir`) with `args`, plain progress, store `root`. */
export async function buildDockerfile(dir: string, root: string, text: string, args: string[]): Promise<RunResult> {
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir, 'Dockerfile'), text);
  return bktEnv(['build', '--root', root, '--progress', 'plain', ...args, dir], { cwd: dir });
}

/** The config of the image `ref` in a plain-HTTP registry (`skopeo inspect --config`), or undefined when the registry has no such tag. */
export async function registryConfig(ref: string): Promise<{ architecture: string; os: string } | undefined> {
  try {
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${ref}`], { encoding: 'utf8', timeout: 60_000 });
    return JSON.parse(stdout) as { architecture: string; os: string };
  } catch (err) {
    if (/manifest unknown|not found/i.test((err as { stderr?: string }).stderr ?? '')) return undefined;
    throw err;
  }
}
