import { BktError, type UsageRecord } from '@bkt/core';
import { humanAgo, humanSize, parseBytes, parseDuration } from '../options.js';
import type { Output } from '../progress/displays.js';
import type { Solver } from '@bkt/solver';
import { openProject, type ProjectOptions } from '../project.js';
import { daemonAddress, type DaemonAddress, type DaemonFlags } from '../remote/address.js';
import { terminalSafe } from '../progress/terminal-safe.js';

export interface DuOptions extends ProjectOptions, DaemonFlags {
  verbose?: boolean;
}

export interface PruneOptions extends ProjectOptions, DaemonFlags {
  all?: boolean;
  keepDuration?: string;
  keepStorage?: string;
  /** buildx's `--filter` expressions, all of which a removed record matches. */
  filter?: string[];
  verbose?: boolean;
}

/** What `--filter` can test, by key, as buildkit's prune filters read a UsageRecord. */
const FILTER_FIELDS: Record<string, (r: UsageRecord) => string[]> = {
  id: (r) => [r.id],
  parents: (r) => r.parents,
  parent: (r) => r.parents,
  description: (r) => [r.description],
  inuse: (r) => [String(r.inUse)],
  mutable: (r) => [String(r.mutable)],
  shared: (r) => [String(r.shared)],
  private: (r) => [String(!r.shared)],
  type: (r) => [r.recordType],
};

/**
 * Parses buildx's prune filters (`--filter KEY=VALUE`, `KEY==VALUE`,
 * `KEY!=VALUE`, `KEY~=REGEXP`; several are all required): keys `id`,
 * `parents`, `description`, `inuse`, `mutable`, `shared`, `private`, `type`,
 * and `until=DURATION` (keep what was used within it, as `--keep-duration`).
 * A bad one is an error naming it.
 */
export function parsePruneFilters(filters: string[]): { until?: number; accepts: (r: UsageRecord) => boolean } {
  const tests: ((r: UsageRecord) => boolean)[] = [];
  let until: number | undefined;
  for (const filter of filters) {
    const m = /^([a-z]+)(==|=|!=|~=)(.*)$/s.exec(filter);
    const bad = (why: string) => new BktError('INVALID_ARGUMENT', `--filter "${filter}": ${why}`, { attribute: 'filter' });
    if (!m) throw bad('expected KEY=VALUE, KEY!=VALUE or KEY~=REGEXP');
    const [, key, op, value] = m as unknown as [string, string, string, string];
    if (key === 'until') {
      if (op !== '=' && op !== '==') throw bad('until takes a duration: until=24h');
      until = parseDuration(value);
      continue;
    }
    const field = FILTER_FIELDS[key];
    if (!field) throw bad(`unknown key "${key}" (known: until, ${Object.keys(FILTER_FIELDS).join(', ')})`);
    if (op === '~=') {
      let re: RegExp;
      try {
        re = new RegExp(value);
      } catch (err) {
        throw bad(`invalid regular expression: ${(err as Error).message}`);
      }
      tests.push((r) => field(r).some((v) => re.test(v)));
    } else if (op === '!=') {
      tests.push((r) => !field(r).includes(value));
    } else {
      tests.push((r) => field(r).includes(value));
    }
  }
  return { until, accepts: (r) => tests.every((t) => t(r)) };
}

/**
 * `bkt du`: the store's records as `buildctl du` prints them — snapshots,
 * content blobs and plugins' records (e.g. `RUN --mount=type=cache`
 * directories, type `exec.cachemount`) — then the totals.
 */
export async function duCommand(opts: DuOptions, out: Output, cwd: string): Promise<number> {
  const records = await withStore(opts, cwd, {
    local: (solver) => solver.diskUsage(),
    daemon: async (address, remote) => remote.daemonDiskUsage(address),
  });
  printRecords(records, !!opts.verbose, out);
  printTotals(records, out);
  return 0;
}

/**
 * `bkt prune`: removes what no build uses (see docs/cli.md), printing each
 * removed record and the total freed. Builds running meanwhile, in this
 * process or another, keep what they use.
 */
export async function pruneCommand(opts: PruneOptions, out: Output, cwd: string): Promise<number> {
  // Parse before opening the store, so a bad flag touches nothing.
  const filters = parsePruneFilters(opts.filter ?? []);
  if (filters.until !== undefined && opts.keepDuration !== undefined) {
    throw new BktError('INVALID_ARGUMENT', 'bkt prune: give --keep-duration or --filter until=…, not both', { attribute: 'filter' });
  }
  const keepDuration = opts.keepDuration !== undefined ? parseDuration(opts.keepDuration) : filters.until;
  const keepStorage = opts.keepStorage !== undefined ? parseBytes(opts.keepStorage) : undefined;
  const removed = await withStore(opts, cwd, {
    local: (solver) => solver.prune({ all: !!opts.all, keepDuration, keepStorage, filter: opts.filter?.length ? filters.accepts : undefined }),
    daemon: (address, remote) => remote.daemonPrune(address, { all: !!opts.all, keepDuration, keepStorage, filters: opts.filter ?? [] }),
  });
  printRecords(removed, !!opts.verbose, out);
  out.write(`Total:\t${humanSize(removed.reduce((n, r) => n + r.size, 0))}\n`);
  return 0;
}

/** Runs `local` over the project's store, or `daemon` against the daemon at `--addr` / `BKT_HOST`. */
async function withStore<T>(
  opts: ProjectOptions & DaemonFlags,
  cwd: string,
  run: { local: (solver: Solver) => Promise<T>; daemon: (address: DaemonAddress, remote: typeof import('../remote/usage.js')) => Promise<T> },
): Promise<T> {
  const address = daemonAddress(opts, cwd);
  if (address) {
    const { refuseRoot } = await import('../remote/backend.js');
    refuseRoot(opts);
    return run.daemon(address, await import('../remote/usage.js'));
  }
  const project = await openProject(opts, false, cwd);
  const { openBuilder } = await import('../builder.js');
  const { bkt, solver } = await openBuilder(opts, project);
  try {
    return await run.local(solver);
  } finally {
    await solver.close();
    await bkt.close();
  }
}

function printRecords(records: UsageRecord[], verbose: boolean, out: Output): void {
  const sorted = [...records].sort((a, b) => b.size - a.size || a.id.localeCompare(b.id));
  if (verbose) {
    for (const r of sorted) {
      const rows: [string, string][] = [
        ['ID:', r.id],
        ...r.parents.map((p): [string, string] => ['Parent:', p]),
        ['Created at:', r.createdAt.toISOString()],
        ['Mutable:', String(r.mutable)],
        ['Reclaimable:', String(!r.inUse)],
        ['Shared:', String(r.shared)],
        ['Size:', humanSize(r.size)],
        ['Description:', terminalSafe(r.description)],
        ['Usage count:', String(r.usageCount)],
        ['Last used:', r.lastUsedAt ? humanAgo(r.lastUsedAt) : ''],
        ['Type:', r.recordType],
      ];
      for (const [k, v] of rows) out.write(`${k.padEnd(14)}${v}\n`);
      out.write('\n');
    }
    return;
  }
  const table = [['ID', 'RECLAIMABLE', 'SIZE', 'LAST ACCESSED']];
  for (const r of sorted) {
    table.push([r.mutable ? `${r.id}*` : r.id, String(!r.inUse), humanSize(r.size), humanAgo(r.lastUsedAt)]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) out.write(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd() + '\n');
}

/** The summary lines of `buildctl du`: shared, private, reclaimable and total sizes. */
function printTotals(records: UsageRecord[], out: Output): void {
  const sum = (rs: UsageRecord[]) => humanSize(rs.reduce((n, r) => n + r.size, 0));
  const rows: [string, string][] = [
    ['Shared:', sum(records.filter((r) => r.shared))],
    ['Private:', sum(records.filter((r) => !r.shared))],
    ['Reclaimable:', sum(records.filter((r) => !r.inUse))],
    ['Total:', sum(records)],
  ];
  for (const [k, v] of rows) out.write(`${k.padEnd(14)}${v}\n`);
}
