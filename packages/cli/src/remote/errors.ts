/** The daemon's gRPC statuses as the `BktError`s a build in this process would have thrown (same message, a matching code). */
import { BktError, type BktErrorCode } from '@bkt/core';
import { Status, statusName } from '@bkt/session';

/** gRPC statuses that have a bkt error code of their own. */
const CODE_OF: Partial<Record<number, BktErrorCode>> = {
  [Status.CANCELLED]: 'CANCELLED',
  [Status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [Status.NOT_FOUND]: 'NOT_FOUND',
  [Status.ALREADY_EXISTS]: 'INVALID_ARGUMENT',
  [Status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [Status.UNAUTHENTICATED]: 'PERMISSION_DENIED',
  [Status.FAILED_PRECONDITION]: 'CONFIG',
  [Status.UNIMPLEMENTED]: 'UNIMPLEMENTED',
  [Status.DEADLINE_EXCEEDED]: 'CANCELLED',
};

/**
 * Status `code` with message `details` that method `method` of the daemon
 * at `address` ended with: UNAVAILABLE says the daemon went away (`reason`:
 * what the transport said, when the status has no message); any other
 * code is the daemon's message with the matching bkt code.
 */
export function daemonError(address: string, method: string, code: number, details: string, cause: unknown, reason = ''): BktError {
  if (code === Status.UNAVAILABLE) return new BktError('INTERNAL', `bktd at ${address} went away during ${method}: ${details || reason}`, {}, { cause });
  return new BktError(CODE_OF[code] ?? 'INTERNAL', details || `${method} failed (${statusName(code)})`, {}, { cause });
}
