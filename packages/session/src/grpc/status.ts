/** gRPC status codes (grpc/grpc doc/statuscodes.md) and the error a failed call rejects with. */
import { BktError, type BktErrorCode } from '@bkt/core';

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES = Object.fromEntries(Object.entries(Status).map(([name, code]) => [code, name])) as Record<number, string>;

/** The name of gRPC status `code` (`status N` for one outside the table). */
export function statusName(code: number): string {
  return NAMES[code] ?? `status ${code}`;
}

/** A call into the session's client ended with a status other than OK. */
export class CallError extends Error {
  constructor(
    /** The gRPC status code. */
    readonly code: number,
    /** The status message (`grpc-message`), or what failed locally. */
    readonly details: string,
    /** The method (`/service/method`). */
    readonly method: string,
  ) {
    super(`${method}: ${statusName(code)}: ${details}`);
    this.name = 'CallError';
  }
}

const BKT_CODES: Partial<Record<number, BktErrorCode>> = {
  [Status.CANCELLED]: 'CANCELLED',
  [Status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [Status.NOT_FOUND]: 'NOT_FOUND',
  [Status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [Status.UNIMPLEMENTED]: 'UNIMPLEMENTED',
};

/** A session error as bkt's error type: `what` says what was being done (`local directory "context"`). */
export function sessionError(what: string, err: unknown): BktError {
  if (err instanceof BktError) return err;
  if (err instanceof CallError) {
    return new BktError(BKT_CODES[err.code] ?? 'INTERNAL', `${what}: the client answered ${NAMES[err.code] ?? err.code}: ${err.details}`, { grpcCode: err.code }, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new BktError('INTERNAL', `${what}: ${message}`, {}, { cause: err });
}

/**
 * The status of a call from its `grpc-status` and `grpc-message` headers (trailers, or a trailers-only
 * response): a missing or malformed code is UNKNOWN; the message is percent-decoded (PROTOCOL-HTTP2.md),
 * or shown as sent when malformed.
 */
export function statusFromHeaders(headers: Record<string, string | string[] | number | undefined>): { code: number; details: string } {
  const code = Number(headers['grpc-status']);
  const raw = headers['grpc-message'];
  const sent = Array.isArray(raw) ? raw.join(', ') : String(raw ?? '');
  let details = sent;
  try {
    details = decodeURIComponent(sent);
  } catch {
    // shown as sent
  }
  return { code: Number.isInteger(code) ? code : Status.UNKNOWN, details };
}

/** `grpc-status` and `grpc-message` (percent-encoded as PROTOCOL-HTTP2.md says: bytes outside printable ASCII, and `%`). */
export function statusHeaders(status: { code: number; details?: string }): Record<string, string> {
  const headers: Record<string, string> = { 'grpc-status': String(status.code) };
  if (status.details) headers['grpc-message'] = percentEncode(status.details);
  return headers;
}

function percentEncode(s: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(s)) return s;
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
