import type { UsageRecord } from '@bkt/core';
import { humanAgo, humanSize, parseBytes, parseDuration } from '../options.js';
import type { Output } from '../progress/displays.js';
import { openBuilder, openProject, type ProjectOptions } from '../project.js';
import { terminalSafe } from '../progress/terminal-safe.js';

export interface DuOptions extends ProjectOptions {
  verbose?: boolean;
}

export interface PruneOptions extends ProjectOptions {
  all?: boolean;
  keepDuration?: string;
  keepStorage?: string;
  verbose?: boolean;
}

/**
 * `bkt du`: the store's records as `buildctl du` prints them — snapshots,
 * content blobs and plugins' records (e.g. `RUN --mount=type=cache`
 * directories, type `exec.cachemount`) — then the totals.
 */
export async function duCommand(opts: DuOptions, out: Output, cwd: string): Promise<number> {
  const project = await openProject(opts, false, cwd);
  const { bkt, solver } = await openBuilder(opts, project);
  try {
    const records = await solver.diskUsage();
    printRecords(records, !!opts.verbose, out);
    printTotals(records, out);
  } finally {
    await solver.close();
    await bkt.close();
  }
  return 0;
}

/**
 * `bkt prune`: removes what no build uses (see docs/cli.md), printing each
 * removed record and the total freed. Builds running meanwhile, in this
 * process or another, keep what they use.
 */
export async function pruneCommand(opts: PruneOptions, out: Output, cwd: string): Promise<number> {
  // Parse before opening the store, so a bad flag touches nothing.
  const keepDuration = opts.keepDuration !== undefined ? parseDuration(opts.keepDuration) : undefined;
  const keepStorage = opts.keepStorage !== undefined ? parseBytes(opts.keepStorage) : undefined;
  const project = await openProject(opts, false, cwd);
  const { bkt, solver } = await openBuilder(opts, project);
  try {
    const removed = await solver.prune({ all: !!opts.all, keepDuration, keepStorage });
    printRecords(removed, !!opts.verbose, out);
    out.write(`Total:\t${humanSize(removed.reduce((n, r) => n + r.size, 0))}\n`);
  } finally {
    await solver.close();
    await bkt.close();
  }
  return 0;
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
