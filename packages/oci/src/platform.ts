/**
 * Platforms (`linux/amd64`, `linux/arm/v7`) read, normalized, formatted and
 * matched as containerd's `platforms` package does.
 *
 * Every platform this module returns is normalized: lower case, canonical
 * architecture names (`x86_64` → `amd64`, `aarch64` → `arm64`, `i386` →
 * `386`), and containerd's default variants (`arm` → `arm/v7`, `arm64/v8` →
 * `arm64`, `amd64/v1` → `amd64`).
 */
import { BktError, type Platform } from '@bkt/core';

/** Operating systems Go knows (go/build's list), for a one-word specifier. */
const KNOWN_OS = new Set([
  'aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl',
  'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows', 'zos',
]);

/** Architectures Go knows, for a one-word specifier. */
const KNOWN_ARCH = new Set([
  '386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle',
  'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm',
]);

/** Node's `process.arch` → Go's GOARCH. */
const GOARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
  mips64el: 'mips64le',
};

/** The first component (`os` or `os(osversion)`) and the others of a specifier. */
const OS_AND_VERSION = /^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$/;
const COMPONENT = /^[A-Za-z0-9_.-]+$/;

/** The platform of this machine (`linux/amd64` on a usual CI runner), normalized. */
export function hostPlatform(): Platform {
  const architecture = GOARCH[process.arch] ?? process.arch;
  let variant: string | undefined;
  if (architecture === 'arm') {
    const armVersion = (process.config.variables as Record<string, unknown>).arm_version;
    if (typeof armVersion === 'string' || typeof armVersion === 'number') variant = `v${armVersion}`;
  }
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

function normalizeOs(os: string): string {
  const lower = os.toLowerCase();
  if (lower === '') return hostPlatform().os;
  return lower === 'macos' ? 'darwin' : lower;
}

/** containerd's architecture aliases and default variants; `variant` is '' when there is none. */
function normalizeArch(arch: string, variant: string): [architecture: string, variant: string] {
  arch = arch.toLowerCase();
  variant = variant.toLowerCase();
  switch (arch) {
    case 'i386':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant];
    case 'aarch64':
    case 'arm64':
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') return ['arm64', ''];
      if (variant === '9' || variant === '9.0' || variant === 'v9.0') return ['arm64', 'v9'];
      return ['arm64', variant];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7'];
      if (variant === '5' || variant === '6' || variant === '8') return ['arm', `v${variant}`];
      return ['arm', variant];
    default:
      return [arch, variant];
  }
}

/**
 * containerd's `Normalize`: lower-case OS (`macos` → `darwin`, empty → the
 * host's), canonical architecture and variant. `osVersion` and `osFeatures`
 * are kept as they are.
 */
export function normalizePlatform(p: Platform): Platform {
  const [architecture, variant] = normalizeArch(p.architecture, p.variant ?? '');
  const out: Platform = { os: normalizeOs(p.os), architecture };
  if (variant) out.variant = variant;
  if (p.osVersion) out.osVersion = p.osVersion;
  if (p.osFeatures?.length) out.osFeatures = [...p.osFeatures];
  return out;
}

/**
 * Parses a platform specifier, as containerd's `Parse`, and normalizes it:
 * `os/arch[/variant]`, or one word — a known OS (the host's architecture) or
 * a known architecture (the host's OS). The OS may carry a version:
 * `windows(10.0.17763)/amd64`. Throws `INVALID_ARGUMENT` naming the specifier.
 */
export function parsePlatform(specifier: string): Platform {
  const invalid = (why: string) =>
    new BktError('INVALID_ARGUMENT', `invalid platform "${specifier}": ${why} (want os/arch[/variant], e.g. linux/amd64)`, { platform: specifier });
  if (specifier.includes('*')) throw invalid('wildcards are not supported');
  const parts = specifier.split('/');
  if (parts.length > 3) throw invalid('too many components');
  const osAndVersion = OS_AND_VERSION.exec(parts[0]);
  if (!osAndVersion) throw invalid(`"${parts[0]}" is not an OS`);
  const bad = parts.slice(1).find((part) => !COMPONENT.test(part));
  if (bad !== undefined) throw invalid(`"${bad}" is not a valid component`);
  const [, os, osVersion] = osAndVersion;
  const version = osVersion ? { osVersion } : {};

  if (parts.length === 1) {
    const host = hostPlatform();
    if (KNOWN_OS.has(normalizeOs(os))) return normalizePlatform({ ...host, os, ...version });
    const [architecture, variant] = normalizeArch(os, '');
    if (!KNOWN_ARCH.has(architecture)) throw invalid('unknown operating system or architecture');
    return normalizePlatform({ os: host.os, architecture, ...(variant ? { variant } : {}) });
  }
  return normalizePlatform({ os, architecture: parts[1], ...(parts[2] ? { variant: parts[2] } : {}), ...version });
}

/** `os/arch[/variant]` (containerd's `Format`: the OS version is left out); `unknown` without an OS. */
export function formatPlatform(p: Platform): string {
  if (!p.os) return 'unknown';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** True when `a` and `b` are the same platform once normalized (OS, architecture and variant). */
function samePlatform(a: Platform, b: Platform): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  return x.os === y.os && x.architecture === y.architecture && (x.variant ?? '') === (y.variant ?? '');
}

/** The number of a `vN` variant, or NaN. */
function variantNumber(variant: string | undefined): number {
  const m = /^v?(\d+)$/.exec(variant ?? '');
  return m ? Number(m[1]) : NaN;
}

/**
 * The platforms whose images run on `want`, best first (containerd's
 * `platformVector`):
 * - `amd64/vN`: `amd64/vN` … `amd64/v1`, then `386`;
 * - `arm/vN`: `arm/vN` … `arm/v5`;
 * - `arm64/v8.x`: `arm64/v8.x` … `arm64/v8`, then `arm/v8` … `arm/v5`;
 *   `arm64/v9.x` also `arm64/v9.x-1` … `arm64/v9` and `arm64/v8.(x+5)` … `arm64/v8`.
 * Any other platform, and an arm64 variant of another form, is compatible only with itself.
 */
export function compatiblePlatforms(want: Platform): Platform[] {
  const p = normalizePlatform(want);
  const like = (architecture: string, variant?: string): Platform => normalizePlatform({ ...p, architecture, variant });

  switch (p.architecture) {
    case 'amd64': {
      const out = [p];
      for (let v = variantNumber(p.variant) - 1; v >= 1; v--) out.push(like('amd64', `v${v}`));
      out.push(like('386'));
      return out;
    }
    case 'arm': {
      const out = [p];
      for (let v = variantNumber(p.variant) - 1; v >= 5; v--) out.push(like('arm', `v${v}`));
      return out;
    }
    case 'arm64': {
      const m = /^v(8|9)(?:\.(\d))?$/.exec(p.variant ?? 'v8');
      if (!m) return [p];
      const major = Number(m[1]);
      const minor = Number(m[2] ?? 0);
      const arm64 = (maj: number, min: number) => like('arm64', min === 0 ? `v${maj}` : `v${maj}.${min}`);
      const out: Platform[] = [];
      for (let v = minor; v >= 0; v--) out.push(arm64(major, v));
      if (major === 9) for (let v = Math.min(minor + 5, 9); v >= 0; v--) out.push(arm64(8, v));
      for (let v = 8; v >= 5; v--) out.push(like('arm', `v${v}`));
      return out;
    }
    default:
      return [p];
  }
}

/** Which platforms' images run on a wanted platform, and which is best (containerd's `platforms.Only`). */
export interface PlatformMatcher {
  /** True when an image for `p` runs on the wanted platform. */
  matches(p: Platform): boolean;
  /** For `Array.sort`: negative when `a` suits the wanted platform better than `b`. */
  compare(a: Platform, b: Platform): number;
}

/**
 * A matcher for images that run on `want`: the platform itself, or one
 * `compatiblePlatforms(want)` lists, the earlier in that list the better. An
 * `arm64` host takes an `arm/v7` image when there is no `arm64` one; an
 * `amd64` host takes `386`.
 */
export function platformMatcher(want: Platform): PlatformMatcher {
  const preference = compatiblePlatforms(want);
  const rank = (p: Platform) => {
    const i = preference.findIndex((q) => samePlatform(q, p));
    return i < 0 ? Number.POSITIVE_INFINITY : i;
  };
  return {
    matches: (p) => rank(p) !== Number.POSITIVE_INFINITY,
    compare: (a, b) => {
      const ra = rank(a);
      const rb = rank(b);
      return ra === rb ? 0 : ra < rb ? -1 : 1;
    },
  };
}
