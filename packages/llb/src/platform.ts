import type { Platform } from '@bkt/core';

/** Node's `process.arch` → OCI architecture (and variant), as containerd's `platforms.DefaultSpec()`. */
const NODE_ARCH: Record<string, { architecture: string; variant?: string }> = {
  x64: { architecture: 'amd64' },
  arm64: { architecture: 'arm64' },
  arm: { architecture: 'arm', variant: 'v7' },
  ia32: { architecture: '386' },
  ppc64: { architecture: 'ppc64le' },
  s390x: { architecture: 's390x' },
  riscv64: { architecture: 'riscv64' },
  loong64: { architecture: 'loong64' },
  mips64el: { architecture: 'mips64le' },
};

/** The platform of this machine, normalized (`linux/amd64` on a usual CI runner). */
export function defaultPlatform(): Platform {
  const arch = NODE_ARCH[process.arch] ?? { architecture: process.arch };
  return normalizePlatform({ os: process.platform === 'win32' ? 'windows' : process.platform, ...arch });
}

/**
 * containerd's `platforms.Normalize`: lower-case OS, canonical architecture
 * names (`x86_64` → `amd64`, `aarch64` → `arm64`), and the default variants
 * (`arm` → `v7`, `arm64/v8` → no variant).
 */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? '';
  switch (architecture) {
    case 'i386':
      architecture = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  const out: Platform = { os, architecture };
  if (variant) out.variant = variant;
  if (p.osVersion) out.osVersion = p.osVersion;
  if (p.osFeatures) out.osFeatures = [...p.osFeatures];
  return out;
}

/** Parses `os/arch[/variant]` (e.g. `linux/arm64`, `linux/arm/v7`). */
export function parsePlatform(spec: string): Platform {
  const [os, architecture, variant, ...rest] = spec.split('/');
  if (!os || !architecture || rest.length > 0) {
    throw new Error(`invalid platform "${spec}": expected os/arch[/variant]`);
  }
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}
