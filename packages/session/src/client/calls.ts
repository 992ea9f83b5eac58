/** How the client's handlers read call metadata and end calls with a status. */
import type { Metadata, ServerDuplexStream, ServiceError } from '@grpc/grpc-js';
import { BktError } from '@bkt/core';
import { headerMapOf, type HeaderMap } from '../headers.js';
import { CallError, Status } from '../grpc/status.js';

/** A call's metadata by lower-cased key, every value a string. */
export function metadataOf(metadata: Metadata): HeaderMap {
  return headerMapOf(metadata.toJSON() as Record<string, unknown>);
}

const CODES: Partial<Record<string, number>> = {
  NOT_FOUND: Status.NOT_FOUND,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  UNIMPLEMENTED: Status.UNIMPLEMENTED,
  CANCELLED: Status.CANCELLED,
};

/** An error as the status a handler answers with. */
export function statusOf(err: unknown): ServiceError {
  const code = err instanceof CallError ? err.code : err instanceof BktError ? (CODES[err.code] ?? Status.UNKNOWN) : Status.UNKNOWN;
  const details = err instanceof CallError ? err.details : err instanceof Error ? err.message : String(err);
  return Object.assign(new Error(details), { code, details, metadata: undefined as unknown as Metadata });
}

/** Ends a streaming call with the status of `err` (unless the daemon already cancelled it). */
export function endWithError(call: ServerDuplexStream<unknown, unknown>, err: unknown): void {
  if (call.cancelled || call.writableEnded) return;
  call.emit('error', statusOf(err));
}
