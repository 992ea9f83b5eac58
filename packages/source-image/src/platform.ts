/**
 * Platforms as OCI and BuildKit spell them: `linux/amd64`, `linux/arm/v7`.
 * Matching follows containerd's default matcher: os and architecture must be
 * equal, a variant asked for must be equal (arm64's default variant is `v8`).
 */
import { BktError, type Platform } from '@bkt/core';

/** Node's `process.arch` → GOARCH. */
const GOARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips: 'mips',
  mipsel: 'mipsle',
  loong64: 'loong64',
};

/** The platform of this machine (`linux/amd64`, `linux/arm/v7`, …). */
export function hostPlatform(): Platform {
  const architecture = GOARCH[process.arch] ?? process.arch;
  const p: Platform = { os: process.platform === 'win32' ? 'windows' : process.platform, architecture };
  if (architecture === 'arm') {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    p.variant = `v${typeof v === 'string' || typeof v === 'number' ? v : 7}`;
  }
  return p;
}

/** `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Parses `os/arch[/variant]`; throws `INVALID_ARGUMENT` naming the text. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new BktError('INVALID_ARGUMENT', `invalid platform "${text}" (want os/arch[/variant], e.g. linux/amd64)`);
  }
  return normalizePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
}

/** Normalizes aliases (`x86_64` → `amd64`, `aarch64` → `arm64`) and drops default variants. */
export function normalizePlatform(p: Platform): Platform {
  let architecture = p.architecture;
  let variant = p.variant || undefined;
  if (architecture === 'x86_64' || architecture === 'x86-64') architecture = 'amd64';
  if (architecture === 'aarch64') architecture = 'arm64';
  if (architecture === 'armhf') [architecture, variant] = ['arm', 'v7'];
  if (architecture === 'armel') [architecture, variant] = ['arm', 'v6'];
  if (architecture === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined;
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  const out: Platform = { os: p.os, architecture };
  if (variant) out.variant = variant;
  if (p.osVersion) out.osVersion = p.osVersion;
  if (p.osFeatures?.length) out.osFeatures = p.osFeatures;
  return out;
}

/** True when an image for `have` runs on `want`. */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return false;
  if (w.variant && h.variant && w.variant !== h.variant) return false;
  // An arm image without a variant is taken for any arm variant, as containerd does.
  return !w.variant || !h.variant || w.variant === h.variant;
}
