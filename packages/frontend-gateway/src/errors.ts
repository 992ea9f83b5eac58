/**
 * Errors across gRPC as BuildKit sends them (`util/grpcerrors`): the status
 * code and message, and typed details in `grpc-status-details-bin` — a
 * `google.rpc.Status` whose details are `Any`s with containerd typeurl names
 * (`github.com/moby/buildkit/errdefs.Solve+json`) and Go's JSON of the
 * struct as the value. A client (buildx, a Go gateway client) reads the
 * `errdefs.Solve` detail to rebuild a failed step's container from its
 * input and mount ref ids, and `errdefs.Vertex` to name the failed step.
 */
import * as grpc from '@grpc/grpc-js';
import * as pb from '@bkt/api/pb';
import * as google from '@bkt/api/google';
import { BktError, isBktError, type BktErrorCode, type Digest, type Platform } from '@bkt/core';

/** One typed detail of a status (`google.protobuf.Any`). */
export interface ErrorDetail {
  typeUrl: string;
  value: Buffer;
}

/** The typeurl BuildKit registers `errdefs.Solve` under. */
export const SOLVE_DETAIL_TYPE = 'github.com/moby/buildkit/errdefs.Solve+json';
/** The typeurl BuildKit registers `errdefs.Vertex` under. */
export const VERTEX_DETAIL_TYPE = 'github.com/moby/buildkit/errdefs.Vertex+json';

/** The metadata key of a status's details (a marshalled `google.rpc.Status`). */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/**
 * `errdefs.Solve` of a failed exec step: its op (with the ExecOp's meta and
 * mounts), the ref ids of its inputs and of its mounts as the process left
 * them (`''` for a mount with no tree of its own).
 */
export function solveErrorDetail(opts: { inputIDs: string[]; mountIDs: string[]; op: pb.ExecOp; opDigest: Digest; platform?: Platform }): ErrorDetail {
  const op = pb.Op.fromPartial({
    op: { $case: 'exec', value: opts.op },
    ...(opts.platform
      ? { platform: { OS: opts.platform.os, Architecture: opts.platform.architecture, Variant: opts.platform.variant ?? '', OSVersion: '', OSFeatures: [] } }
      : {}),
  });
  const json = { inputIDs: opts.inputIDs, mountIDs: opts.mountIDs, op: pb.Op.toJSON(op) };
  return { typeUrl: SOLVE_DETAIL_TYPE, value: Buffer.from(JSON.stringify(json)) };
}

/** `errdefs.Vertex` naming the failed op. */
export function vertexErrorDetail(digest: string): ErrorDetail {
  return { typeUrl: VERTEX_DETAIL_TYPE, value: Buffer.from(JSON.stringify({ digest })) };
}

/** The gRPC status code of a bkt error code. */
const STATUS_OF: Record<BktErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  INVALID_DEFINITION: grpc.status.INVALID_ARGUMENT,
  CONFIG: grpc.status.FAILED_PRECONDITION,
  PLUGIN: grpc.status.FAILED_PRECONDITION,
  DUPLICATE_KEY: grpc.status.FAILED_PRECONDITION,
  NOT_FOUND: grpc.status.NOT_FOUND,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNIMPLEMENTED: grpc.status.UNIMPLEMENTED,
  CANCELLED: grpc.status.CANCELLED,
  EXEC_FAILED: grpc.status.UNKNOWN,
  INTERNAL: grpc.status.INTERNAL,
};

/** The bkt error code of a gRPC status code. */
function codeOf(status: number): BktErrorCode {
  switch (status) {
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.OUT_OF_RANGE:
      return 'INVALID_ARGUMENT';
    case grpc.status.NOT_FOUND:
      return 'NOT_FOUND';
    case grpc.status.PERMISSION_DENIED:
    case grpc.status.UNAUTHENTICATED:
      return 'PERMISSION_DENIED';
    case grpc.status.UNIMPLEMENTED:
      return 'UNIMPLEMENTED';
    case grpc.status.CANCELLED:
    case grpc.status.DEADLINE_EXCEEDED:
      return 'CANCELLED';
    case grpc.status.FAILED_PRECONDITION:
      return 'PLUGIN';
    default:
      return 'INTERNAL';
  }
}

/** A `google.rpc.Status` (a frontend's `Return` error) as a `BktError`, its message prefixed with `where`. */
export function bktErrorOfStatus(status: { code: number; message: string }, where: string): BktError {
  return new BktError(codeOf(status.code), `${where}: ${status.message}`, { grpcCode: status.code });
}

/**
 * The status an error is sent as: a `BktError` by its code, anything else
 * `UNKNOWN`; its typed details (`withErrorDetails`), and `errdefs.Vertex`
 * when it names an op, in `grpc-status-details-bin`.
 */
export function grpcStatusOf(err: unknown, details: ErrorDetail[] = errorDetailsOf(err)): Partial<grpc.StatusObject> {
  const message = err instanceof Error ? err.message : String(err);
  const code = isBktError(err) ? (STATUS_OF[err.code] ?? grpc.status.UNKNOWN) : grpc.status.UNKNOWN;
  const all = [...details];
  const opDigest = isBktError(err) ? err.details.opDigest : undefined;
  if (typeof opDigest === 'string' && !all.some((d) => d.typeUrl === VERTEX_DETAIL_TYPE)) all.push(vertexErrorDetail(opDigest));
  const metadata = new grpc.Metadata();
  if (all.length > 0) {
    const status = google.rpc.Status.encode({ code, message, details: all.map((d) => ({ typeUrl: d.typeUrl, value: d.value })) }).finish();
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(status));
  }
  return { code, details: message, metadata };
}

/** The typed details of a status's metadata (what a client reads back). */
export function statusDetailsOf(metadata: grpc.Metadata | Record<string, unknown>): ErrorDetail[] {
  const raw = metadata instanceof grpc.Metadata ? metadata.get(STATUS_DETAILS_KEY)[0] : metadata[STATUS_DETAILS_KEY];
  if (!raw) return [];
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'base64') : (raw as Buffer);
  return google.rpc.Status.decode(bytes).details.map((d) => ({ typeUrl: d.typeUrl, value: Buffer.from(d.value) }));
}

const DETAILS = Symbol.for('@bkt/frontend-gateway.errorDetails');

/** Attaches typed gRPC status details to an error (sent by `statusOf`). Returns `err`. */
export function withErrorDetails<E extends Error>(err: E, details: ErrorDetail[]): E {
  (err as unknown as Record<symbol, unknown>)[DETAILS] = [...errorDetailsOf(err), ...details];
  return err;
}

/** The typed details attached to an error. */
export function errorDetailsOf(err: unknown): ErrorDetail[] {
  return ((err as Record<symbol, unknown> | undefined)?.[DETAILS] as ErrorDetail[] | undefined) ?? [];
}
