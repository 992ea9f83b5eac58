import { BktError } from '@bkt/core';
import type { EnvList } from '@bkt/llb';

/**
 * Bounds of the environment a RUN carries, Linux's own: the kernel refuses
 * an `execve` whose single `NAME=value` string is longer than
 * MAX_ARG_STRLEN (32 pages, 128 KiB) or whose strings together pass the
 * argument space (ARG_MAX: a quarter of the default 8 MiB stack, 2 MiB), so a
 * RUN past them could never start its process. Checked when the RUN is
 * converted, because every exec op repeats the whole environment in the
 * definition: 60 RUNs of a 30 MiB environment made a 1.9 GB definition.
 *
 * BuildKit has no such check: its Dockerfile frontend copies the environment
 * into every exec op, and an oversized one fails later, either sending the
 * definition (its gRPC messages are limited to 16 MiB) or at exec
 * ("argument list too long"). bkt refuses it at the RUN's line instead.
 * ENV and ARG values themselves stay bounded only by the expansion limits
 * (1 MiB per word, shell.ts): an image may carry a long variable that no RUN
 * of this build uses.
 */
export const ENVIRONMENT_LIMITS = {
  /** Bytes of one `NAME=value` string with its terminating NUL (MAX_ARG_STRLEN). */
  maxVariableBytes: 128 * 1024,
  /** Bytes of all `NAME=value` strings with their NULs (ARG_MAX's 2 MiB). */
  maxTotalBytes: 2 * 1024 * 1024,
} as const;

/** What each environment was measured at (environments are immutable and shared along a stage). */
const measured = new WeakMap<EnvList, { largest?: { key: string; bytes: number }; total: number }>();

function measure(env: EnvList): { largest?: { key: string; bytes: number }; total: number } {
  let m = measured.get(env);
  if (m) return m;
  m = { total: 0 };
  for (const [key, value] of env.entries()) {
    const bytes = Buffer.byteLength(key) + 1 + Buffer.byteLength(value) + 1;
    m.total += bytes;
    if (!m.largest || bytes > m.largest.bytes) m.largest = { key, bytes };
  }
  measured.set(env, m);
  return m;
}

/** Throws when `env` (a RUN's environment) passes `ENVIRONMENT_LIMITS`; the caller adds the Dockerfile line. */
export function checkRunEnvironment(env: EnvList): void {
  const { largest, total } = measure(env);
  if (largest && largest.bytes > ENVIRONMENT_LIMITS.maxVariableBytes) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `the environment variable ${largest.key} is ${largest.bytes} bytes (as NAME=value), more than the 128 KiB (${ENVIRONMENT_LIMITS.maxVariableBytes} bytes) Linux allows one variable of a process (MAX_ARG_STRLEN)`,
    );
  }
  if (total > ENVIRONMENT_LIMITS.maxTotalBytes) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `the environment of this RUN is ${total} bytes (${env.size} variables), more than the 2 MiB (${ENVIRONMENT_LIMITS.maxTotalBytes} bytes) Linux allows a process's environment (ARG_MAX)`,
    );
  }
}
