/**
 * `bkt build`'s flags read beyond what commander parses: the progress mode
 * (`--progress`, else `BUILDKIT_PROGRESS`), and frontend errors about an
 * attribute told as errors of the flag that set it.
 */
import { BktError, isBktError } from '@bkt/core';
import { PROGRESS_MODES, type ProgressMode } from '../progress/displays.js';

/** The progress mode: `--progress`, else `BUILDKIT_PROGRESS` (as buildx), else `auto`; a bad `BUILDKIT_PROGRESS` is an error naming it. */
export function progressMode(flag: ProgressMode | undefined, env: NodeJS.ProcessEnv): ProgressMode {
  if (flag !== undefined) return flag;
  const fromEnv = env.BUILDKIT_PROGRESS;
  if (fromEnv === undefined || fromEnv === '') return 'auto';
  if (!(PROGRESS_MODES as readonly string[]).includes(fromEnv)) {
    throw new BktError('INVALID_ARGUMENT', `BUILDKIT_PROGRESS=${fromEnv}: expected one of ${PROGRESS_MODES.join(', ')}`, { attribute: 'progress' });
  }
  return fromEnv as ProgressMode;
}

/** The flags of `bkt build` that set `dockerfile.v0` attributes, by attribute (or attribute prefix, ending in `:`). */
const FLAG_OF_ATTRIBUTE: Record<string, string> = {
  target: '--target',
  platform: '--platform',
  'add-hosts': '--add-host',
  'shm-size': '--shm-size',
  ulimit: '--ulimit',
  'force-network-mode': '--network',
  'no-cache': '--no-cache-filter',
  'build-arg:': '--build-arg',
  'label:': '--label',
  'context:': '--build-context',
};

/** The flag (with its value) that set `attribute` to `value`, as an error names it: `--target app`, `--build-arg K=V`. */
export function flagOfAttribute(attribute: string, value: string | undefined): string | undefined {
  const flag = FLAG_OF_ATTRIBUTE[attribute];
  if (flag) return value ? `${flag} ${value}` : flag;
  const colon = attribute.indexOf(':');
  const prefixed = colon > 0 ? FLAG_OF_ATTRIBUTE[attribute.slice(0, colon + 1)] : undefined;
  if (!prefixed) return undefined;
  return `${prefixed} ${attribute.slice(colon + 1)}${value !== undefined ? `=${value}` : ''}`;
}

/**
 * A frontend error about an attribute the CLI set from a flag (its
 * `details.attribute`, and no Dockerfile location), told as an error of that
 * flag: `target stage "x" could not be found` → `--target x: target stage "x"
 * could not be found`; `platform: failed to parse …` → `--platform p: failed
 * to parse …`. Other errors are returned as they are.
 */
export function namingFlag(err: unknown, attrs: Record<string, string>): unknown {
  if (!isBktError(err) || typeof err.details.attribute !== 'string' || err.details.file !== undefined) return err;
  const attribute = err.details.attribute;
  const flag = flagOfAttribute(attribute, attrs[attribute]);
  if (!flag || err.message.startsWith(flag.split(' ')[0]!)) return err;
  const own = err.message.startsWith(`${attribute}: `) ? err.message.slice(attribute.length + 2) : err.message;
  return new BktError(err.code, `${flag}: ${own}`, err.details, { cause: err });
}
