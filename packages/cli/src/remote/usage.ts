/**
 * `bkt du` and `bkt prune` against bktd: Control.DiskUsage and Control.Prune,
 * the records as the store's own, and buildx's `--filter` expressions as the
 * containerd filter BuildKit's Prune reads (one filter whose terms must all hold).
 */
import type { control } from '@bkt/api';
import { BktError, type UsageRecord } from '@bkt/core';
import type { DaemonAddress } from './address.js';
import { DaemonClient } from './daemon.js';
import { dateOf } from './time.js';

export interface DaemonPruneOptions {
  all: boolean;
  /** Milliseconds. */
  keepDuration?: number;
  keepStorage?: number;
  /** buildx's `--filter` expressions, as given (already checked). */
  filters: string[];
}

/** Runs `fn` with a connection to the daemon, closed afterwards. */
export async function withDaemon<T>(address: DaemonAddress, fn: (daemon: DaemonClient) => Promise<T>): Promise<T> {
  const daemon = await DaemonClient.connect(address);
  try {
    return await fn(daemon);
  } finally {
    daemon.close();
  }
}

export async function daemonDiskUsage(address: DaemonAddress): Promise<UsageRecord[]> {
  return withDaemon(address, async (daemon) => (await daemon.diskUsage()).map(usageRecordOf));
}

export async function daemonPrune(address: DaemonAddress, opts: DaemonPruneOptions): Promise<UsageRecord[]> {
  const filter = containerdFilter(opts.filters);
  return withDaemon(address, async (daemon) => {
    const removed = await daemon.prune({
      all: opts.all,
      // Go's time.Duration: nanoseconds.
      keepDuration: (opts.keepDuration ?? 0) * 1e6,
      keepBytes: opts.keepStorage ?? 0,
      maxUsedSpace: 0,
      minFreeSpace: 0,
      filter: filter ? [filter] : [],
    });
    return removed.map(usageRecordOf);
  });
}

/** A UsageRecord as the store reports it. */
export function usageRecordOf(m: control.UsageRecord): UsageRecord {
  const parents = m.Parents.length > 0 ? [...m.Parents] : m.Parent !== '' ? [m.Parent] : [];
  return {
    id: m.ID,
    mutable: m.Mutable,
    inUse: m.InUse,
    size: m.Size,
    parents,
    createdAt: dateOf(m.CreatedAt) ?? new Date(0),
    ...(m.LastUsedAt ? { lastUsedAt: dateOf(m.LastUsedAt) } : {}),
    usageCount: m.UsageCount,
    description: m.Description,
    recordType: m.RecordType,
    shared: m.Shared,
  };
}

/** Flags whose value is a yes/no: BuildKit's filter tests them by presence (`mutable`), their negation by the opposite key. */
const BOOLEAN_KEYS: Record<string, string | undefined> = { mutable: 'immutable', shared: 'private', private: 'shared', inuse: undefined };

/**
 * buildx's prune filters (`KEY=VALUE`, `KEY!=VALUE`, `KEY~=REGEXP`; `until=`
 * is `keepDuration`) as one containerd filter, as buildx sends them.
 * `inuse=false` is dropped (a prune removes only records not in use).
 */
export function containerdFilter(filters: readonly string[]): string | undefined {
  const terms: string[] = [];
  for (const filter of filters) {
    const m = /^([a-z]+)(==|=|!=|~=)(.*)$/s.exec(filter);
    if (!m) continue;
    const [, key, op, value] = m as unknown as [string, string, string, string];
    if (key === 'until') continue;
    if (key in BOOLEAN_KEYS) {
      const truth = value === 'true';
      if (op === '~=' || (value !== 'true' && value !== 'false')) {
        throw new BktError('INVALID_ARGUMENT', `--filter "${filter}": ${key} is true or false (${key}=true, ${key}!=true)`, { attribute: 'filter' });
      }
      const wanted = op === '!=' ? !truth : truth;
      const term = wanted ? key : BOOLEAN_KEYS[key];
      if (term) terms.push(term);
      continue;
    }
    terms.push(`${key === 'parent' ? 'parents' : key}${op === '=' ? '==' : op}${quoted(value)}`);
  }
  return terms.length > 0 ? terms.join(',') : undefined;
}

/** A containerd filter value: as it is when plain, else double-quoted with `"` and `\` escaped. */
function quoted(value: string): string {
  return /^[A-Za-z0-9_./:@+-]*$/.test(value) && value !== '' ? value : `"${value.replace(/[\\"]/g, '\\$&')}"`;
}
