/**
 * The daemon's garbage collection, as buildkitd's: an ordered list of
 * policies, each a prune of the records its filters select that were not
 * used within `keepDuration`, removing least recently used first until the
 * store is within the policy's space limits:
 *
 * - `maxUsedSpace`: the store may hold at most this much;
 * - `minFreeSpace`: the store's disk should keep at least this much free
 *   (the store shrinks by what is missing);
 * - `reservedSpace`: but no prune takes the store below this much.
 *
 * A policy with only `reservedSpace` keeps that much (BuildKit's older
 * `keepBytes`); one with no limit at all removes everything it selects.
 * Sizes are bytes, or strings as buildkitd.toml takes them (`512MB`, `10GiB`
 * — binary units — or `10%` of the store's disk); durations are Go
 * durations (`48h`, `90m`) or seconds.
 */
import { statfs } from 'node:fs/promises';
import { BktError, type UsageRecord } from '@bkt/core';
import type { PruneOptions } from '@bkt/solver';
import { parseFilters, usageAdaptor } from './filters.js';

/** One GC policy of `bktd.config.ts` (buildkitd.toml's `[[worker.oci.gcpolicy]]`). */
export interface GCPolicyConfig {
  /** Also remove internal and frontend records. */
  all?: boolean;
  /** Keep what was used within this long: a Go duration (`48h`) or seconds. */
  keepDuration?: string | number;
  reservedSpace?: string | number;
  maxUsedSpace?: string | number;
  minFreeSpace?: string | number;
  /** containerd-style filters over usage records (`type==exec.cachemount`); any may match. */
  filters?: string[];
}

/** A policy with its sizes and duration resolved (bytes, milliseconds). */
export interface GCPolicy {
  all: boolean;
  keepDurationMs: number;
  reservedSpace: number;
  maxUsedSpace: number;
  minFreeSpace: number;
  filters: string[];
}

export interface DiskStat {
  total: number;
  free: number;
}

/** The store disk's size and free bytes. */
export async function diskStat(path: string): Promise<DiskStat> {
  const s = await statfs(path);
  return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
}

/** buildkitd's default policies over a disk of `total` bytes: reserved 10% (at most 10 GiB), max used 60%, min free 20%. */
export function defaultGCPolicies(disk: DiskStat): GCPolicy[] {
  const reservedSpace = Math.min(Math.round(disk.total * 0.1), 10 * 2 ** 30);
  const maxUsedSpace = Math.round(disk.total * 0.6);
  const minFreeSpace = Math.round(disk.total * 0.2);
  const caps = { reservedSpace, maxUsedSpace, minFreeSpace };
  return [
    { all: false, keepDurationMs: 48 * 3600_000, reservedSpace: 0, maxUsedSpace: 512 * 2 ** 20, minFreeSpace: 0, filters: ['type==source.local', 'type==exec.cachemount', 'type==source.git.checkout'] },
    { all: false, keepDurationMs: 60 * 24 * 3600_000, ...caps, filters: [] },
    { all: false, keepDurationMs: 0, ...caps, filters: [] },
    { all: true, keepDurationMs: 0, ...caps, filters: [] },
  ];
}

/** Resolves configured policies (`where` names them in errors: `gcPolicy[2].maxUsedSpace: …`). */
export function resolveGCPolicies(configs: readonly GCPolicyConfig[], disk: DiskStat, where = 'gcPolicy'): GCPolicy[] {
  return configs.map((c, i) => {
    const at = `${where}[${i}]`;
    if (c === null || typeof c !== 'object') throw new BktError('CONFIG', `${at}: must be an object`, { attribute: at });
    parseFilters(c.filters ?? [], `${at}.filters`);
    return {
      all: c.all ?? false,
      keepDurationMs: c.keepDuration === undefined ? 0 : parseDuration(c.keepDuration, `${at}.keepDuration`),
      reservedSpace: c.reservedSpace === undefined ? 0 : parseSize(c.reservedSpace, disk, `${at}.reservedSpace`),
      maxUsedSpace: c.maxUsedSpace === undefined ? 0 : parseSize(c.maxUsedSpace, disk, `${at}.maxUsedSpace`),
      minFreeSpace: c.minFreeSpace === undefined ? 0 : parseSize(c.minFreeSpace, disk, `${at}.minFreeSpace`),
      filters: c.filters ?? [],
    };
  });
}

/**
 * The most bytes the store may hold under `p` (BuildKit's
 * `calculateKeepBytes`), given what it holds (`used`) and its disk:
 * `maxUsedSpace`, lowered by what `minFreeSpace` misses, never below
 * `reservedSpace`. `Infinity` when `p` sets no limit the store exceeds
 * (only `minFreeSpace`, with enough free); `reservedSpace` alone is the limit.
 */
export function keepBytes(p: Pick<GCPolicy, 'reservedSpace' | 'maxUsedSpace' | 'minFreeSpace'>, used: number, disk: DiskStat): number {
  let keep = p.maxUsedSpace > 0 ? p.maxUsedSpace : Infinity;
  const excess = p.minFreeSpace - disk.free;
  if (p.minFreeSpace > 0 && excess > 0) keep = Math.min(keep, used - excess);
  if (keep === Infinity && p.maxUsedSpace === 0 && p.minFreeSpace === 0 && p.reservedSpace > 0) keep = p.reservedSpace;
  return Math.max(keep, p.reservedSpace, 0);
}

/**
 * The prune a policy asks for now (solver prune options), or undefined when
 * the store is within its limits. `used` is what the store holds.
 */
export function policyPrune(p: GCPolicy, used: number, disk: DiskStat): PruneOptions | undefined {
  const limited = p.reservedSpace > 0 || p.maxUsedSpace > 0 || p.minFreeSpace > 0;
  const keep = limited ? keepBytes(p, used, disk) : 0;
  if (limited && used <= keep) return undefined;
  const select = parseFilters(p.filters, 'gcPolicy.filters');
  return {
    all: p.all,
    ...(p.keepDurationMs > 0 ? { keepDuration: p.keepDurationMs } : {}),
    ...(limited ? { keepStorage: keep } : {}),
    ...(p.filters.length > 0 ? { filter: (u: UsageRecord) => select(usageAdaptor(u)) } : {}),
  };
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** Bytes of `512MB`, `10GiB`, `1.5g`, `10%` (of the disk), or a number. */
export function parseSize(v: string | number, disk: DiskStat, where: string): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return Math.floor(v);
  const s = String(v).trim();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (pct && Number(pct[1]) <= 100) return Math.floor((disk.total * Number(pct[1])) / 100);
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(s);
  if (!m) throw new BktError('CONFIG', `${where}: "${s}" is not a size (want bytes, 512MB, 10GiB or 10%)`, { attribute: where });
  return Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds of a Go duration (`48h`, `1h30m`, `500ms`) or a number of seconds. */
export function parseDuration(v: string | number, where: string): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v * 1000;
  const s = String(v).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  let total = 0;
  let rest = s;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (!m) throw new BktError('CONFIG', `${where}: "${s}" is not a duration (want e.g. 48h, 1h30m, or seconds)`, { attribute: where });
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** What the store holds, as GC counts it: every record's size. */
export function usedBytes(records: readonly UsageRecord[]): number {
  return records.reduce((n, r) => n + r.size, 0);
}
