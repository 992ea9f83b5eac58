/**
 * Translations between bkt's domain values (progress events, usage records,
 * history records) and control.proto's messages, field by field as BuildKit
 * fills them.
 */
import type * as control from '@bkt/api/control';
import type { ProgressEvent, UsageRecord } from '@bkt/core';
import type { BuildHistoryRecord } from '@bkt/solver';

type Timestamp = NonNullable<control.UsageRecord['CreatedAt']>;

/** google.protobuf.Timestamp of a date. */
export function timestamp(d: Date): Timestamp;
export function timestamp(d: Date | undefined): Timestamp | undefined;
export function timestamp(d: Date | undefined): Timestamp | undefined {
  if (!d) return undefined;
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** A usage record as `buildctl du` receives it. */
export function usageRecordMessage(u: UsageRecord): control.UsageRecord {
  return {
    ID: u.id,
    Mutable: u.mutable,
    InUse: u.inUse,
    Size: u.size,
    Parent: u.parents[0] ?? '',
    CreatedAt: timestamp(u.createdAt),
    LastUsedAt: timestamp(u.lastUsedAt),
    UsageCount: u.usageCount,
    Description: u.description,
    RecordType: u.recordType,
    Shared: u.shared,
    Parents: u.parents,
  };
}

/** Progress events as one StatusResponse (vertexes, statuses, logs and warnings, each in the order they happened). */
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

/** google.rpc.Code of a bkt error code (as the gRPC status of the failed Solve). */
const RPC_CODE: Record<string, number> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  INVALID_DEFINITION: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  CONFIG: 9,
  PLUGIN: 9,
  DUPLICATE_KEY: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
};

/** A history record as ListenBuildHistory sends it. */
export function historyRecordMessage(r: BuildHistoryRecord & { pinned?: boolean }): control.BuildHistoryRecord {
  return {
    Ref: r.ref,
    Frontend: r.frontend,
    FrontendAttrs: r.frontendAttrs,
    Exporters: r.exporters.map((e) => ({ Type: e.type, Attrs: e.attrs })),
    error: r.error ? { code: RPC_CODE[r.error.code] ?? 2, message: r.error.message, details: [] } : undefined,
    CreatedAt: timestamp(r.createdAt),
    CompletedAt: timestamp(r.completedAt),
    logs: undefined,
    ExporterResponse: r.exporterResponse,
    Result: undefined,
    Results: {},
    Generation: 0,
    trace: undefined,
    pinned: r.pinned ?? false,
    numCachedSteps: r.numCachedSteps,
    numTotalSteps: r.numTotalSteps,
    numCompletedSteps: r.numCompletedSteps,
    externalError: undefined,
  };
}
