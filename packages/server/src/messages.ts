/**
 * Translations between bkt's domain values (usage records, history records)
 * and control.proto's messages, field by field as BuildKit fills them.
 * Progress events ⇄ StatusResponse live in @bkt/session (the CLI reads them back).
 */
import type * as control from '@bkt/api/control';
import type { UsageRecord } from '@bkt/core';
import { timestamp } from '@bkt/session';
import type { BuildHistoryRecord } from '@bkt/solver';

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
