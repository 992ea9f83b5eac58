/**
 * The one error type bkt throws for bad input and failed builds. `code` is
 * stable and machine-readable; the message names the problem and where it is
 * (file:line, op digest, attribute name). The CLI prints `message` and exits 1.
 */
export type BktErrorCode =
  | 'INVALID_ARGUMENT' // bad user input: attrs, flags, references
  | 'INVALID_DEFINITION' // a malformed or inconsistent LLB definition
  | 'CONFIG' // bkt.config.* could not be loaded
  | 'PLUGIN' // a plugin could not be resolved or registered
  | 'DUPLICATE_KEY' // two plugins registered the same registry key
  | 'NOT_FOUND'
  | 'PERMISSION_DENIED' // path escapes, refused entitlements
  | 'UNIMPLEMENTED' // e.g. an op kind with no executor
  | 'CANCELLED'
  | 'EXEC_FAILED' // a process exited with a code not in validExitCodes
  | 'INTERNAL';

export interface BktErrorDetails {
  /** The op digest of the vertex the error belongs to. */
  opDigest?: string;
  /** A source location (`bkt.config.ts`, `Dockerfile`). */
  file?: string;
  line?: number;
  column?: number;
  /** The attribute or option that is wrong. */
  attribute?: string;
  [key: string]: unknown;
}

export class BktError extends Error {
  readonly code: BktErrorCode;
  readonly details: BktErrorDetails;

  constructor(code: BktErrorCode, message: string, details: BktErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BktError';
    this.code = code;
    this.details = details;
  }
}

export function isBktError(err: unknown, code?: BktErrorCode): err is BktError {
  return err instanceof BktError && (code === undefined || err.code === code);
}
