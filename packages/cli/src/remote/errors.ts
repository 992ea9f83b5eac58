/** The daemon's gRPC statuses as the `BktError`s a build in this process would have thrown (same message, a matching code). */
import { BktError, type BktErrorCode } from '@bkt/core';

/** gRPC status codes (grpc/grpc doc/statuscodes.md) that have a bkt error code of their own. */
const CODE_OF: Partial<Record<number, BktErrorCode>> = {
  1: 'CANCELLED', // CANCELLED
  3: 'INVALID_ARGUMENT', // INVALID_ARGUMENT
  5: 'NOT_FOUND', // NOT_FOUND
  6: 'INVALID_ARGUMENT', // ALREADY_EXISTS
  7: 'PERMISSION_DENIED', // PERMISSION_DENIED
  16: 'PERMISSION_DENIED', // UNAUTHENTICATED
  9: 'CONFIG', // FAILED_PRECONDITION
  12: 'UNIMPLEMENTED', // UNIMPLEMENTED
  4: 'CANCELLED', // DEADLINE_EXCEEDED
};
const UNAVAILABLE = 14;
const NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/**
 * Status `code` with message `details` that method `method` of the daemon
 * at `address` ended with: UNAVAILABLE says the daemon went away (`reason`:
 * what the transport said, when the status has no message); any other
 * code is the daemon's message with the matching bkt code.
 */
export function daemonError(address: string, method: string, code: number, details: string, cause: unknown, reason = ''): BktError {
  if (code === UNAVAILABLE) return new BktError('INTERNAL', `bktd at ${address} went away during ${method}: ${details || reason}`, {}, { cause });
  return new BktError(CODE_OF[code] ?? 'INTERNAL', details || `${method} failed (${NAMES[code] ?? code})`, {}, { cause });
}
