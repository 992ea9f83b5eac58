/** How the client's handlers end calls with a status. */
import { BktError } from '@bkt/core';
import type { CallStatus, ServerCall } from '../grpc/server.js';
import { CallError, Status } from '../grpc/status.js';

const CODES: Partial<Record<string, number>> = {
  NOT_FOUND: Status.NOT_FOUND,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  UNIMPLEMENTED: Status.UNIMPLEMENTED,
  CANCELLED: Status.CANCELLED,
};

/** An error as the status a handler answers with. */
export function statusOf(err: unknown): CallStatus {
  const code = err instanceof CallError ? err.code : err instanceof BktError ? (CODES[err.code] ?? Status.UNKNOWN) : Status.UNKNOWN;
  const details = err instanceof CallError ? err.details : err instanceof Error ? err.message : String(err);
  return { code, details };
}

/** Ends a streaming call with the status of `err` (unless the daemon already cancelled it or it ended). */
export function endWithError(call: ServerCall<unknown, unknown>, err: unknown): void {
  if (call.cancelled || call.writableEnded) return;
  call.fail(statusOf(err));
}
