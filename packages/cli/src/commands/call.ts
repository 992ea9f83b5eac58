/**
 * `bkt build --call NAME` (and `--check`, = `--call check`): what buildx's
 * `--call` asks the Dockerfile frontend instead of building — its
 * subrequests — and how the answer is printed on stdout, as buildx prints it.
 */
import { BktError } from '@bkt/core';
import type { Output } from '../progress/displays.js';

/** The functions of `--call`, by name, with the frontend subrequest each one is. */
const FUNCTIONS = { check: 'frontend.lint', outline: 'frontend.outline', targets: 'frontend.targets' } as const;

export interface CallRequest {
  name: keyof typeof FUNCTIONS;
  /** The frontend's `requestid` attr. */
  requestId: string;
  /** `text` (default) or `json` (`--call NAME,format=json`: the answer's JSON as it is). */
  format: 'text' | 'json';
}

/**
 * Parses `--call NAME[,format=text|json]` and `--check`; `build` (the
 * default) is no call. A bad value is an error naming the flag.
 */
export function parseCall(call: string | undefined, check: boolean | undefined): CallRequest | undefined {
  if (check && call !== undefined && call !== 'check' && !call.startsWith('check,')) {
    throw new BktError('INVALID_ARGUMENT', `--check and --call ${call} ask for different things: give one of them`, { attribute: 'call' });
  }
  const value = call ?? (check ? 'check' : 'build');
  const [name = '', ...options] = value.split(',');
  const bad = (why: string) => new BktError('INVALID_ARGUMENT', `--call ${value}: ${why}`, { attribute: 'call' });
  let format: CallRequest['format'] = 'text';
  for (const option of options) {
    const m = /^format=(text|json)$/.exec(option);
    if (!m) throw bad(`unknown option "${option}" (format=text or format=json)`);
    format = m[1] as CallRequest['format'];
  }
  const known = ['build', ...Object.keys(FUNCTIONS)];
  const lower = name === 'lint' ? 'check' : name.toLowerCase();
  if (!known.includes(lower)) throw bad(`unknown function "${name}" (${known.join(', ')})`);
  if (lower === 'build') {
    if (options.length > 0) throw bad('build takes no options');
    return undefined;
  }
  const fn = lower as CallRequest['name'];
  return { name: fn, requestId: FUNCTIONS[fn], format };
}

/**
 * Prints a call's answer (the frontend's result metadata) on `out`, as
 * buildx does, and returns the exit code: for `check`, 1 when there are
 * warnings (the answer's `result.statuscode`), else 0.
 */
export function printCallResult(call: CallRequest, metadata: Record<string, Uint8Array>, out: Output): number {
  const text = (key: string) => (metadata[key] ? new TextDecoder().decode(metadata[key]) : undefined);
  const json = text('result.json');
  const answer = text('result.txt');
  if (json === undefined || answer === undefined) {
    throw new BktError('INTERNAL', `--call ${call.name}: the frontend answered without result.json and result.txt (does it support ${call.requestId}?)`);
  }
  if (call.format === 'json') {
    out.write(`${json}\n`);
  } else if (call.name === 'check') {
    const count = (JSON.parse(json) as { warnings?: unknown[] }).warnings?.length ?? 0;
    if (count === 0) out.write('Check complete, no warnings found.\n');
    else out.write(`Check complete, ${count === 1 ? '1 warning has' : `${count} warnings have`} been found!\n${answer}`);
  } else {
    out.write(answer);
  }
  const status = Number.parseInt(text('result.statuscode') ?? '0', 10);
  return Number.isFinite(status) ? status : 0;
}

/** A call prints an answer and builds nothing: export flags with it are a mistake, named in the error. */
export function refuseExports(call: CallRequest, flags: { output: string[]; tag: string[]; push?: boolean; load?: boolean; iidfile?: string; metadataFile?: string }): void {
  const given = [
    ...(flags.output.length > 0 ? ['--output'] : []),
    ...(flags.tag.length > 0 ? ['--tag'] : []),
    ...(flags.push ? ['--push'] : []),
    ...(flags.load ? ['--load'] : []),
    ...(flags.iidfile !== undefined ? ['--iidfile'] : []),
    ...(flags.metadataFile !== undefined ? ['--metadata-file'] : []),
  ];
  if (given.length > 0) {
    throw new BktError('INVALID_ARGUMENT', `--call ${call.name} builds and exports nothing: drop ${given.join(', ')}`, { attribute: 'call' });
  }
}
