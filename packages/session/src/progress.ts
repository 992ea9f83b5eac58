/**
 * A build's progress on the wire: core's `ProgressEvent`s as control.proto's
 * `StatusResponse` (what `Control.Status` streams), and back. The daemon
 * sends with `statusResponse`, a client feeds its displays with
 * `progressEvents`.
 */
import type * as control from '@bkt/api/control';
import type { Digest, ProgressEvent, SourceRange } from '@bkt/core';

type Timestamp = NonNullable<control.Vertex['started']>;

/** google.protobuf.Timestamp of a date. */
export function timestamp(d: Date): Timestamp;
export function timestamp(d: Date | undefined): Timestamp | undefined;
export function timestamp(d: Date | undefined): Timestamp | undefined {
  if (!d) return undefined;
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** The date of a google.protobuf.Timestamp (millisecond precision). */
export function dateOf(t: Timestamp): Date;
export function dateOf(t: Timestamp | undefined): Date | undefined;
export function dateOf(t: Timestamp | undefined): Date | undefined {
  if (!t) return undefined;
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
}

/** Progress events as one StatusResponse: vertexes, statuses, logs and warnings, each in the order they happened. */
export function statusResponse(events: readonly ProgressEvent[]): control.StatusResponse {
  const out: control.StatusResponse = { vertexes: [], statuses: [], logs: [], warnings: [] };
  for (const e of events) {
    switch (e.type) {
      case 'vertex': {
        const v = e.vertex;
        out.vertexes.push({
          digest: v.digest,
          inputs: v.inputs,
          name: v.name,
          cached: v.cached,
          started: timestamp(v.started),
          completed: timestamp(v.completed),
          error: v.error ?? '',
          progressGroup: v.progressGroup ? { id: v.progressGroup.id, name: v.progressGroup.name, weak: v.progressGroup.weak ?? false } : undefined,
        });
        break;
      }
      case 'status': {
        const s = e.status;
        out.statuses.push({
          ID: s.id,
          vertex: s.vertex,
          name: s.name,
          current: s.current,
          total: s.total,
          timestamp: timestamp(s.timestamp),
          started: timestamp(s.started),
          completed: timestamp(s.completed),
        });
        break;
      }
      case 'log':
        out.logs.push({ vertex: e.log.vertex, timestamp: timestamp(e.log.timestamp), stream: e.log.stream, msg: Buffer.from(e.log.msg) });
        break;
      case 'warning': {
        const w = e.warning;
        out.warnings.push({
          vertex: w.vertex,
          level: w.level,
          short: Buffer.from(w.short),
          detail: w.detail.map((d) => Buffer.from(d)),
          url: w.url ?? '',
          info: undefined,
          ranges: (w.ranges ?? []).map((r) => ({ start: { ...r.start }, end: { ...r.end } })),
        });
        break;
      }
    }
  }
  return out;
}

/**
 * The progress events of one StatusResponse, in the order they happened as
 * far as the message tells it. A response lists vertexes, statuses, logs and
 * warnings apart (each kind in order), so the kinds are merged back by time:
 * a vertex counts at its completion (else its start; else just after the
 * vertex event before it), a status or log at its timestamp; at equal times
 * a vertex's start goes first and its completion last. Warnings carry no
 * time and come last, as the response lists them.
 */
export function progressEvents(response: control.StatusResponse): ProgressEvent[] {
  const queues: Timed[][] = [vertexEvents(response.vertexes), response.statuses.map(statusEvent), response.logs.map(logEvent)];
  const heads = queues.map(() => 0);
  const out: ProgressEvent[] = [];
  for (;;) {
    let pick = -1;
    for (const [q, queue] of queues.entries()) {
      const head = queue[heads[q]!];
      if (!head) continue;
      if (pick < 0 || before(head, queues[pick]![heads[pick]!]!)) pick = q;
    }
    if (pick < 0) break;
    out.push(queues[pick]![heads[pick]!++]!.event);
  }
  for (const w of response.warnings) out.push(warningEvent(w));
  return out;
}

interface Timed {
  event: ProgressEvent;
  /** Milliseconds since the epoch. */
  at: number;
  /** At equal times: -1 first (a vertex starting), 0, 1 last (a vertex completing). */
  rank: number;
}

function before(a: Timed, b: Timed): boolean {
  return a.at < b.at || (a.at === b.at && a.rank < b.rank);
}

function vertexEvents(vertexes: readonly control.Vertex[]): Timed[] {
  let previous = -Infinity;
  return vertexes.map((v) => {
    const started = dateOf(v.started);
    const completed = dateOf(v.completed);
    const at = (completed ?? started)?.getTime() ?? previous;
    previous = at;
    const event: ProgressEvent = {
      type: 'vertex',
      vertex: {
        digest: v.digest as Digest,
        inputs: v.inputs.map((i) => i as Digest),
        name: v.name,
        cached: v.cached,
        ...(started ? { started } : {}),
        ...(completed ? { completed } : {}),
        ...(v.error !== '' ? { error: v.error } : {}),
        ...(v.progressGroup ? { progressGroup: { id: v.progressGroup.id, name: v.progressGroup.name, ...(v.progressGroup.weak ? { weak: true } : {}) } } : {}),
      },
    };
    return { event, at, rank: completed ? 1 : -1 };
  });
}

function statusEvent(s: control.VertexStatus): Timed {
  const time = dateOf(s.timestamp) ?? new Date(0);
  const started = dateOf(s.started);
  const completed = dateOf(s.completed);
  const event: ProgressEvent = {
    type: 'status',
    status: { id: s.ID, vertex: s.vertex as Digest, name: s.name, current: s.current, total: s.total, timestamp: time, ...(started ? { started } : {}), ...(completed ? { completed } : {}) },
  };
  return { event, at: time.getTime(), rank: 0 };
}

function logEvent(l: control.VertexLog): Timed {
  const time = dateOf(l.timestamp) ?? new Date(0);
  return { event: { type: 'log', log: { vertex: l.vertex as Digest, timestamp: time, stream: l.stream, msg: new Uint8Array(l.msg) } }, at: time.getTime(), rank: 0 };
}

function warningEvent(w: control.VertexWarning): ProgressEvent {
  const position = (p: { line: number; character: number } | undefined) => ({ line: p?.line ?? 0, character: p?.character ?? 0 });
  const ranges: SourceRange[] = w.ranges.map((r) => ({ start: position(r.start), end: position(r.end) }));
  return {
    type: 'warning',
    warning: {
      vertex: w.vertex as Digest,
      level: w.level,
      short: Buffer.from(w.short).toString('utf8'),
      detail: w.detail.map((d) => Buffer.from(d).toString('utf8')),
      ...(w.url !== '' ? { url: w.url } : {}),
      ...(ranges.length > 0 ? { ranges } : {}),
    },
  };
}
