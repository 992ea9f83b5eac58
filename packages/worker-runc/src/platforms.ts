/**
 * Which platforms this machine's runc can execute (BuildKit's worker
 * `Platforms`): the host's own, 386 on an amd64 host, and every architecture
 * with a usable binfmt_misc handler — enabled, matching an ELF machine from
 * offset 0, and registered with the F flag (the kernel opened the
 * interpreter at registration, so it runs inside a container's root
 * filesystem, where the interpreter's path does not exist). Detected from
 * `/proc/sys/fs/binfmt_misc`, never assumed.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, type Platform } from '@bkt/core';
import { formatPlatform, hostPlatform, normalizePlatform } from '@bkt/oci';

export const BINFMT_MISC_DIR = '/proc/sys/fs/binfmt_misc';

/** One entry of binfmt_misc, as the kernel shows it in `<dir>/<name>`. */
export interface BinfmtHandler {
  name: string;
  enabled: boolean;
  interpreter: string;
  /** The registration flags (`P`, `O`, `C`, `F`). */
  flags: string;
  offset: number;
  /** The magic bytes (empty for extension handlers). */
  magic: Buffer;
  mask: Buffer;
}

/** A platform runc runs through a binfmt_misc handler. */
export interface EmulatedPlatform {
  platform: Platform;
  /** The handler's name (`qemu-aarch64`). */
  handler: string;
  interpreter: string;
}

/** What runc can execute on this machine. */
export interface ExecutablePlatforms {
  /** The host's platform first, then what its CPU also runs (386 on amd64). */
  native: Platform[];
  /** Architectures with a usable binfmt_misc handler, in the handlers' order. */
  emulated: EmulatedPlatform[];
  /** Handlers for an ELF machine that runc cannot use (disabled, or without the F flag), for error messages. */
  unusable: { platform: Platform; handler: string; reason: string }[];
}

/** The handlers registered in `dir` (none when binfmt_misc is not mounted there). */
export async function readBinfmtHandlers(dir = BINFMT_MISC_DIR): Promise<BinfmtHandler[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n !== 'register' && n !== 'status').sort();
  } catch {
    return [];
  }
  const out: BinfmtHandler[] = [];
  for (const name of names) {
    const text = await readFile(join(dir, name), 'utf8').catch(() => undefined);
    if (text !== undefined) out.push(parseBinfmtHandler(name, text));
  }
  return out;
}

/** Parses the kernel's text for a handler (`enabled`, `interpreter …`, `flags: …`, `offset …`, `magic …`, `mask …`). */
export function parseBinfmtHandler(name: string, text: string): BinfmtHandler {
  const h: BinfmtHandler = { name, enabled: false, interpreter: '', flags: '', offset: 0, magic: Buffer.alloc(0), mask: Buffer.alloc(0) };
  for (const line of text.split('\n')) {
    const [key = '', ...rest] = line.trim().split(/\s+/);
    const value = rest.join(' ');
    if (key === 'enabled') h.enabled = true;
    else if (key === 'interpreter') h.interpreter = value;
    else if (key === 'flags:') h.flags = value;
    else if (key === 'offset') h.offset = Number(value);
    else if (key === 'magic') h.magic = Buffer.from(value, 'hex');
    else if (key === 'mask') h.mask = Buffer.from(value, 'hex');
  }
  return h;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** ELF `e_machine` values → GOARCH, by ELF class (1: 32-bit, 2: 64-bit) and byte order (1: little, 2: big endian). */
const ELF_ARCH: Record<string, string> = {
  '3/1/1': '386',
  '62/2/1': 'amd64',
  '40/1/1': 'arm',
  '183/2/1': 'arm64',
  '21/2/1': 'ppc64le',
  '21/2/2': 'ppc64',
  '22/2/2': 's390x',
  '243/2/1': 'riscv64',
  '8/1/1': 'mipsle',
  '8/1/2': 'mips',
  '8/2/1': 'mips64le',
  '8/2/2': 'mips64',
  '258/2/1': 'loong64',
};

/** `EF_MIPS_ABI2`: a 32-bit MIPS handler that requires it runs n32 binaries, not the o32 ones `linux/mips` means. */
const EF_MIPS_ABI2 = 0x20;

/**
 * The platforms a handler's magic matches: an ELF header's machine, class
 * and byte order (`linux/arm64` for qemu-aarch64; `linux/arm/v7` and
 * `linux/arm/v6` for qemu-arm). None for other handlers.
 */
export function handlerPlatforms(h: BinfmtHandler): Platform[] {
  const m = h.magic;
  if (h.offset !== 0 || m.length < 20 || !m.subarray(0, 4).equals(ELF_MAGIC)) return [];
  const elfClass = m[4]!;
  const order = m[5]!;
  const machine = order === 1 ? m.readUInt16LE(18) : m.readUInt16BE(18);
  const architecture = ELF_ARCH[`${machine}/${elfClass}/${order}`];
  if (!architecture) return [];
  if (machine === 8 && elfClass === 1) {
    // e_flags is at offset 36 of an ELF32 header; its lowest byte is 36 (little endian) or 39 (big endian).
    const i = order === 1 ? 36 : 39;
    if (m.length > i && (m[i]! & (h.mask[i] ?? 0xff) & EF_MIPS_ABI2) !== 0) return [];
  }
  if (architecture === 'arm') return [{ os: 'linux', architecture, variant: 'v7' }, { os: 'linux', architecture, variant: 'v6' }];
  return [normalizePlatform({ os: 'linux', architecture })];
}

/** The platforms the host's CPU runs without emulation: its own, and 386 on amd64. */
export function nativePlatforms(host: Platform = hostPlatform()): Platform[] {
  const out = [normalizePlatform(host)];
  if (host.architecture === 'amd64') out.push({ os: host.os, architecture: '386' });
  return out;
}

/** The platforms runc executes here: native ones and those of usable binfmt_misc handlers. */
export async function executablePlatforms(opts: { binfmtDir?: string; host?: Platform } = {}): Promise<ExecutablePlatforms> {
  const native = nativePlatforms(opts.host);
  const result: ExecutablePlatforms = { native, emulated: [], unusable: [] };
  for (const h of await readBinfmtHandlers(opts.binfmtDir)) {
    for (const platform of handlerPlatforms(h)) {
      if (native.some((n) => sameArch(n, platform))) continue;
      const reason = !h.enabled ? 'disabled' : !h.flags.includes('F') ? 'registered without the F flag, so its interpreter is not found inside a container' : undefined;
      if (reason) result.unusable.push({ platform, handler: h.name, reason });
      else if (!result.emulated.some((e) => sameArch(e.platform, platform) && e.platform.variant === platform.variant)) {
        result.emulated.push({ platform, handler: h.name, interpreter: h.interpreter });
      }
    }
  }
  return result;
}

/** Every platform of `p`, as a worker reports them (BuildKit's `buildctl debug workers`): native first. */
export function workerPlatforms(p: ExecutablePlatforms): Platform[] {
  return [...p.native, ...p.emulated.map((e) => e.platform)];
}

/**
 * How `platform` runs here: `native`, or through the emulated platform's
 * handler. Architectures match regardless of variant (an emulator runs every
 * variant of its architecture; a CPU the variants of its own). Undefined when
 * runc cannot run it.
 */
export function executionOf(p: ExecutablePlatforms, platform: Platform): 'native' | EmulatedPlatform | undefined {
  const want = normalizePlatform(platform);
  if (p.native.some((n) => sameArch(n, want))) return 'native';
  return p.emulated.find((e) => sameArch(e.platform, want));
}

/**
 * Throws unless runc can run steps of `platform` here: the error names the
 * platform, what this machine runs and how to enable emulation. Reads
 * binfmt_misc only for a platform that is not native.
 */
export async function requireExecutable(platform: Platform | undefined, opts: { binfmtDir?: string; host?: Platform } = {}): Promise<void> {
  if (!platform) return;
  const native = nativePlatforms(opts.host);
  const want = normalizePlatform(platform);
  if (native.some((n) => sameArch(n, want))) return;
  const detected = await executablePlatforms(opts);
  if (executionOf(detected, want)) return;
  const wanted = formatPlatform(want);
  const runs = workerPlatforms(detected).map(formatPlatform).join(', ');
  if (want.os !== native[0]!.os) {
    throw new BktError('UNIMPLEMENTED', `the step is for ${wanted}, but runc runs ${native[0]!.os} steps only (this machine runs ${runs})`, {
      platform: wanted,
    });
  }
  const unusable = detected.unusable.find((u) => sameArch(u.platform, want));
  const why = unusable
    ? `its binfmt_misc handler ${unusable.handler} is ${unusable.reason}`
    : `no binfmt_misc handler emulates ${want.architecture} (${BINFMT_MISC_DIR})`;
  throw new BktError(
    'UNIMPLEMENTED',
    `the step is for ${wanted}, which this machine cannot execute: ${why}; it runs ${runs}. ` +
      'To emulate it, install qemu-user-static and register its handlers with the F flag ' +
      '(bkt\'s scripts/binfmt, or docker run --privileged --rm tonistiigi/binfmt --install all)',
    { platform: wanted },
  );
}

function sameArch(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture;
}
