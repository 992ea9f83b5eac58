/**
 * The platform facts the Dockerfile needs beyond `@bkt/oci`'s: the platform
 * ARGs BuildKit predefines, and reading a platform where an invalid one is
 * not an error of its own (a check skips it; the conversion words its error).
 */
import type { Platform } from '@bkt/core';
import { formatPlatform, parsePlatform } from '@bkt/oci';

/** The platform `specifier` names (containerd's syntax, normalized), or undefined when it names none. */
export function platformOrUndefined(specifier: string): Platform | undefined {
  try {
    return parsePlatform(specifier);
  } catch {
    return undefined;
  }
}

/** The ARGs BuildKit predefines for FROM: BUILDPLATFORM, TARGETOS, … and TARGETSTAGE. */
export function predefinedPlatformArgs(build: Platform, target: Platform, targetStage: string): Record<string, string> {
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
