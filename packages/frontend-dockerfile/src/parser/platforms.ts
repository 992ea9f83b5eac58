/**
 * The small parts of containerd's platforms package and distribution's
 * reference package the checks need: parse `os[/arch[/variant]]`, the
 * predefined platform ARGs, and whether a string is a valid image reference.
 */

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

const KNOWN_OS = new Set(['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows', 'zos']);
const KNOWN_ARCH = new Set(['386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm']);

function normalizeArch(arch: string, variant: string): [string, string] {
  switch (arch) {
    case 'i386':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant];
    case 'aarch64':
    case 'arm64':
      return ['arm64', variant === '8' || variant === 'v8' ? '' : variant];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7'];
      if (variant === '5' || variant === '6' || variant === '8') return ['arm', 'v' + variant];
      return ['arm', variant];
    default:
      return [arch, variant];
  }
}

/** containerd platforms.Parse (Linux host defaults); undefined when not a platform. */
export function parsePlatform(spec: string): PlatformSpec | undefined {
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){0,2}$/.test(spec)) return undefined;
  const parts = spec.toLowerCase().split('/');
  if (parts.length === 1) {
    if (KNOWN_OS.has(parts[0])) {
      const [architecture, variant] = normalizeArch(hostArch(), '');
      return { os: parts[0], architecture, ...(variant ? { variant } : {}) };
    }
    const [architecture, variant] = normalizeArch(parts[0], '');
    if (KNOWN_ARCH.has(architecture)) return { os: 'linux', architecture, ...(variant ? { variant } : {}) };
    return undefined;
  }
  const os = parts[0];
  const [architecture, variant] = normalizeArch(parts[1], parts[2] ?? '');
  if (!KNOWN_OS.has(os) && os !== 'unknown') return undefined;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: PlatformSpec): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

function hostArch(): string {
  switch (process.arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    default:
      return process.arch;
  }
}

/** The host platform (the default build and target platform). */
export function hostPlatform(): PlatformSpec {
  const [architecture, variant] = normalizeArch(hostArch(), '');
  return { os: 'linux', architecture, ...(variant ? { variant } : {}) };
}

/** The ARGs BuildKit predefines for FROM: BUILDPLATFORM, TARGETOS, … and TARGETSTAGE. */
export function predefinedPlatformArgs(build: PlatformSpec, target: PlatformSpec, targetStage: string): Record<string, string> {
  return {
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDOSVERSION: '',
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETOSVERSION: '',
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
    TARGETSTAGE: targetStage === '' ? 'default' : targetStage,
  };
}

// distribution/reference grammar.
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const REFERENCE_RE = new RegExp(`^(?:(${DOMAIN})/)?(${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::(${TAG}))?(?:@(${DIGEST}))?$`);

/** Whether `ref` parses as a normalized image reference (`alpine`, `docker.io/library/alpine:3`, `x@sha256:…`). */
export function isValidImageReference(ref: string): boolean {
  if (ref === '' || ref.length > 255 + 200) return false;
  if (/^[a-f0-9]{64}$/.test(ref)) return false; // an image ID, not a name
  const m = REFERENCE_RE.exec(ref);
  if (m) return true;
  return false;
}
