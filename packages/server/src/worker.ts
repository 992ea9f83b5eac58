/**
 * What ListWorkers and Info report: the daemon's one worker (runc over the
 * store) as buildkitd describes its OCI worker — a stable id, the
 * `org.mobyproject.buildkit.worker.*` labels, the platforms runc executes
 * here, the GC policy — and the daemon's version.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type * as pb from '@bkt/api/pb';
import type * as types from '@bkt/api/types';
import type { Platform } from '@bkt/core';
import type { GCPolicy } from './gc.js';
import { parseFilters } from './filters.js';

export interface WorkerInfo {
  id: string;
  labels: Record<string, string>;
  platforms: Platform[];
  gcPolicy: GCPolicy[];
}

/** A worker id that stays the same for one store root on one host (BuildKit keeps a random one in its root). */
export function workerId(root: string): string {
  const h = createHash('sha256').update(`${hostname()}\0${root}`).digest();
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return [...h.subarray(0, 25)].map((b) => alphabet[b % 36]).join('');
}

/** buildkitd's worker labels, with bkt's values. */
export function workerLabels(opts: { snapshotter: string; network: string }): Record<string, string> {
  return {
    'org.mobyproject.buildkit.worker.executor': 'oci',
    'org.mobyproject.buildkit.worker.hostname': hostname(),
    'org.mobyproject.buildkit.worker.network': opts.network,
    'org.mobyproject.buildkit.worker.oci.process-mode': 'sandbox',
    'org.mobyproject.buildkit.worker.selinux.enabled': 'false',
    'org.mobyproject.buildkit.worker.snapshotter': opts.snapshotter,
  };
}

/** The worker as a WorkerRecord message. */
export function workerRecordMessage(w: WorkerInfo): types.WorkerRecord {
  return {
    ID: w.id,
    Labels: w.labels,
    platforms: w.platforms.map(platformMessage),
    GCPolicy: w.gcPolicy.map((p) => ({
      all: p.all,
      // Go's time.Duration: nanoseconds.
      keepDuration: Math.round(p.keepDurationMs * 1e6),
      keepBytes: p.reservedSpace,
      filters: p.filters,
      maxUsedSpace: p.maxUsedSpace,
      minFreeSpace: p.minFreeSpace,
    })),
    BuildkitVersion: buildkitVersion(),
  };
}

export function platformMessage(p: Platform): pb.Platform {
  return { OS: p.os, Architecture: p.architecture, Variant: p.variant ?? '', OSVersion: '', OSFeatures: [] };
}

/** Whether the worker passes ListWorkers' containerd-style filters (`id`, `labels.KEY`, `platforms`). */
export function workerMatches(w: WorkerInfo, filters: readonly string[]): boolean {
  const select = parseFilters(filters, 'ListWorkers filter');
  return select(([field, ...rest]) => {
    if (field === 'id') return [w.id, true];
    if (field === 'labels') {
      const key = rest.join('.');
      return key in w.labels ? [w.labels[key], true] : ['', false];
    }
    if (field === 'platforms' || field === 'platform') {
      const names = w.platforms.map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join('/'));
      return [names.join(','), names.length > 0];
    }
    return ['', false];
  });
}

let version: types.BuildkitVersion | undefined;

/** The daemon's version: package `@bkt/server`, its version, the revision from `BKT_REVISION` if set. */
export function buildkitVersion(): types.BuildkitVersion {
  if (!version) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    version = { package: '@bkt/server', version: `v${pkg.version}`, revision: process.env.BKT_REVISION ?? '' };
  }
  return version;
}
