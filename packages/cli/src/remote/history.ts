/**
 * `bkt history` against bktd: the recorded builds from ListenBuildHistory
 * (what is recorded now: EarlyExit), a build's progress and logs replayed by
 * Control.Status, pins and removals by UpdateBuildHistory.
 */
import type { control } from '@bkt/api';
import type { ProgressEvent } from '@bkt/core';
import { progressEvents } from '@bkt/session';
import type { BuildHistoryRecord } from '@bkt/solver';
import type { HistoryReader } from '../commands/history.js';
import type { DaemonAddress } from './address.js';
import { withDaemon } from './usage.js';
import { dateOf } from './time.js';

/** google.rpc.Code → the bkt error code the daemon recorded (as its Control service maps them). */
const CODE_NAMES: Record<number, string> = {
  1: 'CANCELLED',
  3: 'INVALID_ARGUMENT',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  9: 'CONFIG',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
};

/** Runs `fn` over the history of the daemon at `address`. */
export async function withDaemonHistory<T>(address: DaemonAddress, fn: (history: HistoryReader) => Promise<T>): Promise<T> {
  return withDaemon(address, async (daemon) => {
    // Newest first, as the store lists them.
    const records = (await daemon.history()).map(historyRecordOf).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
    const running = new Set(records.filter((r) => r.status === 'running').map((r) => r.ref));
    const controller = new AbortController();
    try {
      return await fn({
        root: `bktd at ${address.address}`,
        list: () => records,
        progress: (ref, opts) => replay(daemon.status.bind(daemon), ref, { logs: opts?.logs ?? true, running: running.has(ref), signal: controller.signal }),
        pin: (ref, pinned) => daemon.updateBuildHistory({ Ref: ref, Pinned: pinned }),
        delete: (ref) => daemon.updateBuildHistory({ Ref: ref, Delete: true }),
      });
    } finally {
      controller.abort();
    }
  });
}

/** A running build's progress so far arrives at once; after this long without more, what is recorded has been read. */
const RUNNING_IDLE_MS = 500;

/**
 * Build `ref`'s progress as Control.Status replays it. Status follows a
 * running build until it ends; the history shows what it recorded so far,
 * so for a running build the replay stops once the daemon goes quiet.
 */
async function* replay(
  status: (ref: string, signal: AbortSignal) => AsyncIterable<control.StatusResponse>,
  ref: string,
  opts: { logs: boolean; running: boolean; signal: AbortSignal },
): AsyncGenerator<ProgressEvent> {
  const stop = new AbortController();
  const it = status(ref, AbortSignal.any([opts.signal, stop.signal]))[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<'idle'>((resolve) => {
        if (opts.running) timer = setTimeout(() => resolve('idle'), RUNNING_IDLE_MS);
      });
      const next = await Promise.race([it.next(), idle]);
      clearTimeout(timer);
      if (next === 'idle' || next.done) return;
      for (const e of progressEvents(opts.logs ? next.value : { ...next.value, logs: [] })) yield e;
    }
  } finally {
    stop.abort();
    await it.return?.();
  }
}

/** A history record as the store keeps it. */
export function historyRecordOf(m: control.BuildHistoryRecord): BuildHistoryRecord {
  const completedAt = dateOf(m.CompletedAt);
  const error = m.error ? { code: CODE_NAMES[m.error.code] ?? 'UNKNOWN', message: m.error.message } : undefined;
  const status: BuildHistoryRecord['status'] = !completedAt
    ? 'running'
    : !error
      ? 'completed'
      : error.code === 'CANCELLED'
        ? 'cancelled'
        : error.message.startsWith('interrupted:')
          ? 'interrupted'
          : 'failed';
  return {
    ref: m.Ref,
    frontend: m.Frontend,
    frontendAttrs: { ...m.FrontendAttrs },
    exporters: m.Exporters.map((e) => ({ type: e.Type, attrs: { ...e.Attrs } })),
    status,
    ...(error ? { error } : {}),
    createdAt: dateOf(m.CreatedAt) ?? new Date(0),
    ...(completedAt ? { completedAt } : {}),
    numTotalSteps: m.numTotalSteps,
    numCachedSteps: m.numCachedSteps,
    numCompletedSteps: m.numCompletedSteps,
    exporterResponse: { ...m.ExporterResponse },
    ...(m.pinned ? { pinned: true } : {}),
  };
}
