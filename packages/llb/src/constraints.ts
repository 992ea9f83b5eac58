import type { Platform } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { normalizePlatform, parsePlatform } from '@bkt/oci';
import type { SourceLocation } from './sourcemap.js';

/** Per-op metadata, as Go's `llb.OpMetadata` (it travels in `Definition.metadata`, not in the op's bytes). */
export interface OpMetadata {
  ignoreCache?: boolean;
  description?: Record<string, string>;
  /** true: always export this vertex's cache; false: never; undefined: the build's default. */
  exportCache?: boolean;
  caps?: Record<string, true>;
  progressGroup?: { id: string; name: string; weak?: boolean };
}

/**
 * Options every op constructor takes (Go's `ConstraintsOpt`s): metadata, the
 * platform, worker constraints and source locations.
 */
export interface OpOptions {
  /** The name progress shows for the op (`llb.customname`, Go's `WithCustomName`). */
  customName?: string;
  /** Free-form description entries (Go's `WithDescription`). */
  description?: Record<string, string>;
  /** Run the op even when a cache record exists (Go's `IgnoreCache`). */
  ignoreCache?: boolean;
  /** Groups vertices in progress output (Go's `ProgressGroup`). */
  progressGroup?: { id: string; name: string; weak?: boolean };
  /** true / false: force / forbid exporting this op's cache (Go's `WithExportCache` / `WithoutExportCache`). */
  exportCache?: boolean;
  /** The platform of the op (`linux/arm64` or an object). */
  platform?: Platform | string;
  /** Worker filters (Go's `Require`). */
  workerConstraints?: string[];
  /** Extra LLB capabilities this op needs. */
  caps?: string[];
  /** Where in a source file (a Dockerfile, a config) this op comes from. */
  sourceLocations?: SourceLocation[];
}

/** The resolved form of `OpOptions` (Go's `llb.Constraints`). */
export interface Constraints {
  platform?: Platform;
  workerConstraints: string[];
  metadata: OpMetadata;
  /** The `local.unique` attr of local sources without a session. */
  localUniqueId?: string;
  sourceLocations: SourceLocation[];
}

export function toPlatform(p: Platform | string): Platform {
  return typeof p === 'string' ? parsePlatform(p) : normalizePlatform(p);
}

export function constraintsFrom(opts: OpOptions = {}): Constraints {
  const metadata: OpMetadata = {};
  if (opts.ignoreCache) metadata.ignoreCache = true;
  if (opts.description || opts.customName !== undefined) {
    metadata.description = { ...opts.description };
    if (opts.customName !== undefined) metadata.description['llb.customname'] = opts.customName;
  }
  if (opts.exportCache !== undefined) metadata.exportCache = opts.exportCache;
  if (opts.progressGroup) metadata.progressGroup = { ...opts.progressGroup };
  for (const cap of opts.caps ?? []) addCap(metadata, cap);
  return {
    ...(opts.platform ? { platform: toPlatform(opts.platform) } : {}),
    workerConstraints: [...(opts.workerConstraints ?? [])],
    metadata,
    sourceLocations: [...(opts.sourceLocations ?? [])],
  };
}

export function addCap(m: OpMetadata, cap: string): void {
  m.caps = { ...m.caps, [cap]: true };
}

/** Go's `mergeMetadata`: `m2`'s set fields win; caps and descriptions are unions. */
export function mergeMetadata(m1: OpMetadata, m2: OpMetadata): OpMetadata {
  const out: OpMetadata = { ...m1 };
  if (m2.ignoreCache) out.ignoreCache = true;
  if (m2.description && Object.keys(m2.description).length > 0) {
    out.description = { ...m1.description, ...m2.description };
  }
  if (m2.exportCache !== undefined) out.exportCache = m2.exportCache;
  if (m2.caps) out.caps = { ...m1.caps, ...m2.caps };
  if (m2.progressGroup) out.progressGroup = m2.progressGroup;
  return out;
}

/** A record with its keys inserted in sorted order, so protobuf map encoding is deterministic. */
export function sorted<V>(rec: Record<string, V> | undefined): Record<string, V> {
  const out: Record<string, V> = {};
  for (const k of Object.keys(rec ?? {}).sort()) out[k] = rec![k];
  return out;
}

export function metadataToPB(m: OpMetadata): pb.OpMetadata {
  return {
    ignoreCache: m.ignoreCache ?? false,
    description: sorted(m.description),
    exportCache: m.exportCache === undefined ? undefined : { Value: m.exportCache },
    caps: sorted(m.caps),
    progressGroup: m.progressGroup
      ? { id: m.progressGroup.id, name: m.progressGroup.name, weak: m.progressGroup.weak ?? false }
      : undefined,
  };
}

export function metadataFromPB(m: pb.OpMetadata): OpMetadata {
  const out: OpMetadata = {};
  if (m.ignoreCache) out.ignoreCache = true;
  if (Object.keys(m.description).length > 0) out.description = { ...m.description };
  if (m.exportCache) out.exportCache = m.exportCache.Value;
  const caps = Object.keys(m.caps).filter((k) => m.caps[k]);
  if (caps.length > 0) out.caps = Object.fromEntries(caps.map((k) => [k, true as const]));
  if (m.progressGroup) out.progressGroup = { ...m.progressGroup };
  return out;
}

/**
 * Go's `MarshalConstraints`: the op's platform (its own, else the marshal
 * default) and worker constraints, and its metadata merged over the marshal
 * call's. Ops that are not platform-specific drop `platform` afterwards.
 */
export function marshalConstraints(base: Constraints, override: Constraints): { op: pb.Op; metadata: OpMetadata } {
  const platform = override.platform ?? base.platform!;
  const opPlatform: pb.Platform = {
    OS: platform.os,
    Architecture: platform.architecture,
    Variant: platform.variant ?? '',
    OSVersion: platform.osVersion ?? '',
    OSFeatures: platform.osFeatures ? [...platform.osFeatures] : [],
  };
  return {
    op: {
      inputs: [],
      op: undefined,
      platform: opPlatform,
      constraints: { filter: [...base.workerConstraints, ...override.workerConstraints] },
    },
    metadata: mergeMetadata(base.metadata, override.metadata),
  };
}
