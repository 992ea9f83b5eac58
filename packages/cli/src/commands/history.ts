/**
 * `bkt history ls | inspect | logs | rm | pin | unpin`, as `docker buildx
 * history`: the builds the store recorded, one build's record and steps, and
 * its logs — every byte its steps wrote (see history-logs.ts); removing
 * builds, pinning them (no history limit or prune drops a pinned build or its
 * logs). A build is named by its ref, a unique prefix of it, `latest` (the
 * default of inspect and logs) or `^N` (the Nth before the latest).
 */
import { BktError, type ProgressEvent } from '@bkt/core';
import type { BuildHistoryRecord } from '@bkt/solver';
import { Store } from '@bkt/store';
import { humanAgo } from '../options.js';
import type { Output } from '../progress/displays.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { openProject, storeRoot, type ProjectOptions } from '../project.js';
import { daemonAddress, type DaemonFlags } from '../remote/address.js';
import type { Io } from './build.js';
import { printLogs, type LogsOptions } from './history-logs.js';

export interface HistoryListOptions extends ProjectOptions, DaemonFlags {
  format?: string;
}

export interface HistoryInspectOptions extends ProjectOptions, DaemonFlags {
  format?: string;
}

export interface HistoryLogsOptions extends ProjectOptions, DaemonFlags, LogsOptions {}

export interface HistoryUpdateOptions extends ProjectOptions, DaemonFlags {}

/** What a command reads of the store's history, and the changes `rm`, `pin` and `unpin` ask of it. */
export interface HistoryReader {
  root: string;
  list(): BuildHistoryRecord[];
  progress(ref: string, opts?: { logs?: boolean }): AsyncIterable<ProgressEvent>;
  /** Pins or unpins build `ref`. */
  pin(ref: string, pinned: boolean): Promise<void>;
  /** Removes build `ref` with its recorded progress and logs (a running one is refused). */
  delete(ref: string): Promise<void>;
}

/** One recorded step, as `inspect` and `logs --step` number them: by first appearance in the build's progress, as `--progress plain` did. */
export interface StepSummary {
  index: number;
  digest: string;
  name: string;
  cached: boolean;
  started?: Date;
  completed?: Date;
  error?: string;
}

/** Runs `fn` over the history of the project's store (or of the daemon at `--addr`), closing the store afterwards. */
async function withHistory<T>(opts: ProjectOptions & DaemonFlags, cwd: string, fn: (history: HistoryReader) => Promise<T>): Promise<T> {
  const address = daemonAddress(opts, cwd);
  if (address) {
    const { withDaemonHistory } = await import('../remote/history.js');
    return withDaemonHistory(address, fn);
  }
  const project = await openProject(opts, false, cwd);
  const store = await Store.open(storeRoot(opts, project));
  try {
    return await fn({
      root: store.root,
      list: () => store.history.list(),
      progress: (ref, o) => store.history.progress(ref, o),
      pin: async (ref, pinned) => store.history.pin(ref, pinned),
      delete: (ref) => store.history.delete(ref),
    });
  } finally {
    await store.close();
  }
}

/** `bkt history ls`: every recorded build, newest first, as a table or (`--format json`) one JSON object per line. */
export async function historyListCommand(opts: HistoryListOptions, out: Output, cwd: string): Promise<number> {
  const format = checkFormat(opts.format, ['table', 'json']);
  await withHistory(opts, cwd, async (history) => {
    const records = history.list();
    if (format === 'json') {
      for (const r of records) out.write(JSON.stringify(recordJson(r)) + '\n');
      return;
    }
    const rows = [['REF', 'NAME', 'STATUS', 'CREATED', 'DURATION']];
    for (const r of records) rows.push([r.ref, terminalSafe(buildName(r)), statusWord(r), humanAgo(r.createdAt), duration(r)]);
    printTable(rows, out);
  });
  return 0;
}

/** `bkt history inspect [REF]`: a build's record and its steps. */
export async function historyInspectCommand(ref: string | undefined, opts: HistoryInspectOptions, out: Output, cwd: string): Promise<number> {
  const format = checkFormat(opts.format, ['pretty', 'json']);
  await withHistory(opts, cwd, async (history) => {
    const record = resolveBuild(history.list(), ref, history.root);
    const steps = await readSteps(history, record.ref);
    if (format === 'json') {
      const json = { ...recordJson(record), exporters: record.exporters, exporterResponse: record.exporterResponse, frontendAttrs: record.frontendAttrs, steps: steps.map(stepJson) };
      out.write(JSON.stringify(json, null, 2) + '\n');
      return;
    }
    printInspect(record, steps, out);
  });
  return 0;
}

/** `bkt history logs [REF]`: the build's progress as `--progress plain` prints it, or one step's output (`--step`, `--raw`). */
export async function historyLogsCommand(ref: string | undefined, opts: HistoryLogsOptions, io: Io): Promise<number> {
  if (opts.raw && opts.step === undefined) {
    throw new BktError('INVALID_ARGUMENT', '--raw prints one step\'s output: give --step N (the step\'s number, as bkt history inspect lists them, or its digest)', { attribute: 'raw' });
  }
  await withHistory(opts, io.cwd, async (history) => {
    const record = resolveBuild(history.list(), ref, history.root);
    const steps = await readSteps(history, record.ref);
    await printLogs(record.ref, steps, history.progress(record.ref), opts, io);
  });
  return 0;
}

/**
 * `bkt history rm REF…`: removes each build from the history with its logs,
 * printing its ref. Every REF is resolved first, so one that names no build
 * removes nothing; a running build is refused (exit 1).
 */
export async function historyRmCommand(refs: string[], opts: HistoryUpdateOptions, out: Output, cwd: string): Promise<number> {
  await withHistory(opts, cwd, async (history) => {
    const records = history.list();
    const builds = [...new Set(refs.map((ref) => resolveBuild(records, ref, history.root).ref))];
    for (const ref of builds) {
      await history.delete(ref);
      out.write(`${ref}\n`);
    }
  });
  return 0;
}

/** `bkt history pin REF` / `unpin REF`: pins the build (no history limit drops it, no prune removes its logs) or unpins it; prints its ref. */
export async function historyPinCommand(ref: string, pinned: boolean, opts: HistoryUpdateOptions, out: Output, cwd: string): Promise<number> {
  await withHistory(opts, cwd, async (history) => {
    const record = resolveBuild(history.list(), ref, history.root);
    await history.pin(record.ref, pinned);
    out.write(`${record.ref}\n`);
  });
  return 0;
}

/**
 * The build `ref` names among `records` (newest first): `latest` or none is
 * the newest, `^N` the Nth before it, else the build whose ref is `ref` or
 * the only one starting with it. Anything else is an error naming `ref`.
 */
export function resolveBuild(records: BuildHistoryRecord[], ref: string | undefined, root: string): BuildHistoryRecord {
  if (records.length === 0) throw new BktError('NOT_FOUND', `the build history of ${root} is empty: no build has run with this --root`, { attribute: 'ref' });
  const wanted = ref ?? 'latest';
  const offset = wanted === 'latest' ? 0 : /^\^(\d+)$/.exec(wanted)?.[1];
  if (offset !== undefined) {
    const record = records[Number(offset)];
    if (!record) {
      const range = records.length === 1 ? '1 build (^0, the latest)' : `${records.length} builds (^0 is the latest, ^${records.length - 1} the oldest)`;
      throw new BktError('NOT_FOUND', `build ${wanted}: the history of ${root} holds ${range}`, { attribute: 'ref' });
    }
    return record;
  }
  const exact = records.find((r) => r.ref === wanted);
  if (exact) return exact;
  const matches = wanted === '' ? [] : records.filter((r) => r.ref.startsWith(wanted));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) {
    throw new BktError('INVALID_ARGUMENT', `build ref "${wanted}" is ambiguous: it starts ${matches.map((r) => r.ref).join(', ')}`, { attribute: 'ref' });
  }
  throw new BktError('NOT_FOUND', `no build "${wanted}" in the history of ${root} (bkt history ls lists them)`, { attribute: 'ref' });
}

/** The steps of build `ref` from its recorded progress (without reading its logs), numbered by first appearance. */
export async function readSteps(history: Pick<HistoryReader, 'progress'>, ref: string): Promise<StepSummary[]> {
  const steps = new Map<string, StepSummary>();
  const step = (digest: string) => {
    let s = steps.get(digest);
    if (!s) steps.set(digest, (s = { index: steps.size + 1, digest, name: digest, cached: false }));
    return s;
  };
  for await (const event of history.progress(ref, { logs: false })) {
    if (event.type === 'vertex') {
      const v = event.vertex;
      Object.assign(step(v.digest), { name: v.name, cached: v.cached, started: v.started ?? steps.get(v.digest)?.started, completed: v.completed, error: v.error });
    } else if (event.type === 'status') step(event.status.vertex);
    else if (event.type === 'warning') step(event.warning.vertex);
  }
  return [...steps.values()];
}

/** What `ls` shows as a build's name: the Dockerfile and target of a Dockerfile build, the frontend of another, `(llb)` for a definition. */
export function buildName(r: BuildHistoryRecord): string {
  if (r.frontend === 'dockerfile.v0') {
    const file = r.frontendAttrs.filename ?? 'Dockerfile';
    return r.frontendAttrs.target ? `${file} (${r.frontendAttrs.target})` : file;
  }
  return r.frontend || '(llb)';
}

/** buildx's status words. */
function statusWord(r: BuildHistoryRecord): string {
  switch (r.status) {
    case 'completed':
      return 'Completed';
    case 'failed':
      return 'Error';
    case 'cancelled':
      return 'Canceled';
    case 'interrupted':
      return 'Interrupted';
    case 'running':
      return 'Running';
  }
}

/** A step's status word: DONE, ERROR, CANCELED, RUNNING (its build still runs) or INCOMPLETE (its build ended first). */
export function stepStatus(s: StepSummary, buildRunning: boolean): string {
  if (s.error !== undefined) return s.error.endsWith('context canceled') ? 'CANCELED' : 'ERROR';
  if (s.completed) return 'DONE';
  return buildRunning ? 'RUNNING' : 'INCOMPLETE';
}

function durationMs(from: Date | undefined, to: Date | undefined): number | undefined {
  return from && to ? Math.max(0, to.getTime() - from.getTime()) : undefined;
}

/** `0.4s`, `12.3s`, `1m 05s`, `2h 03m`; a running build's time so far with `+`. */
function duration(r: BuildHistoryRecord): string {
  const ms = durationMs(r.createdAt, r.completedAt ?? new Date());
  return formatDuration(ms ?? 0) + (r.completedAt ? '' : '+');
}

export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

function recordJson(r: BuildHistoryRecord) {
  return {
    ref: r.ref,
    name: buildName(r),
    status: r.status,
    frontend: r.frontend,
    createdAt: r.createdAt.toISOString(),
    ...(r.completedAt ? { completedAt: r.completedAt.toISOString(), durationMs: durationMs(r.createdAt, r.completedAt) } : {}),
    numTotalSteps: r.numTotalSteps,
    numCachedSteps: r.numCachedSteps,
    numCompletedSteps: r.numCompletedSteps,
    pinned: r.pinned ?? false,
    ...(r.error ? { error: r.error } : {}),
  };
}

function stepJson(s: StepSummary) {
  return {
    step: s.index,
    digest: s.digest,
    name: s.name,
    status: stepStatus(s, false),
    cached: s.cached,
    ...(s.started ? { started: s.started.toISOString() } : {}),
    ...(s.completed ? { completed: s.completed.toISOString(), durationMs: durationMs(s.started, s.completed) } : {}),
    ...(s.error !== undefined ? { error: s.error } : {}),
  };
}

function printInspect(r: BuildHistoryRecord, steps: StepSummary[], out: Output): void {
  const fields: [string, string][] = [
    ['Ref:', r.ref],
    ['Name:', buildName(r)],
    ['Frontend:', r.frontend || '(none: an LLB definition)'],
    ['Status:', statusWord(r)],
    ...(r.pinned ? [['Pinned:', 'yes (no history limit or prune removes it)'] as [string, string]] : []),
    ...(r.error ? [['Error:', `${r.error.code}: ${r.error.message}`] as [string, string]] : []),
    ['Started:', localTime(r.createdAt)],
    ...(r.completedAt ? [['Completed:', localTime(r.completedAt)] as [string, string]] : []),
    ['Duration:', duration(r)],
    ['Build Steps:', `${r.numCompletedSteps}/${r.numTotalSteps} completed (${r.numCachedSteps} cached)`],
  ];
  for (const [k, v] of fields) out.write(`${k.padEnd(16)}${terminalSafe(v).replaceAll('\n', '\n'.padEnd(17))}\n`);
  const section = (title: string, header: string[], rows: string[][]) => {
    if (rows.length === 0) return;
    out.write(`\n${title}:\n`);
    printTable([header, ...rows.map((row) => row.map((c) => terminalSafe(c).replaceAll('\n', ' ')))], out);
  };
  section('Frontend Attrs', ['KEY', 'VALUE'], sorted(r.frontendAttrs));
  section('Exporters', ['TYPE', 'ATTRS'], r.exporters.map((e) => [e.type, sorted(e.attrs).map(([k, v]) => `${k}=${v}`).join(',')]));
  section('Exporter Response', ['KEY', 'VALUE'], sorted(r.exporterResponse));
  const running = r.status === 'running';
  section(
    'Steps',
    ['STEP', 'STATUS', 'CACHED', 'DURATION', 'NAME'],
    steps.map((s) => [`#${s.index}`, stepStatus(s, running), String(s.cached), s.completed ? formatDuration(durationMs(s.started, s.completed) ?? 0) : '', s.name]),
  );
}

function sorted(attrs: Record<string, string>): string[][] {
  return Object.entries(attrs).sort(([a], [b]) => a.localeCompare(b));
}

function printTable(rows: string[][], out: Output): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) out.write(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd() + '\n');
}

/** `2025-02-07 11:56:24` in local time, as buildx prints a build's start. */
function localTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function checkFormat<T extends string>(format: string | undefined, allowed: readonly T[]): T {
  const f = (format ?? allowed[0]) as T;
  if (!allowed.includes(f)) throw new BktError('INVALID_ARGUMENT', `--format ${format}: expected ${allowed.join(' or ')}`, { attribute: 'format' });
  return f;
}
