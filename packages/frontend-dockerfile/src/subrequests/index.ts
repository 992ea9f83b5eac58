/**
 * Answers a subrequest (`requestid` attr) instead of building: the outline
 * of the target, the list of targets, or the build-check warnings. Outline
 * and targets only parse the Dockerfile; lint converts it (base image
 * configs are resolved, nothing is solved).
 */
import { BktError, type BuildResult, type Platform } from '@bkt/core';
import { hostPlatform } from '@bkt/oci';
import type { ConvertResult } from '../convert/convert.js';
import { globalArgs } from '../parser/checks.js';
import { parseDockerfile } from '../parser/dockerfile.js';
import { envFromMap } from '../parser/shell.js';
import { resolveStages } from '../parser/stages.js';
import { lintResults, printLintResults } from './lint.js';
import { dockerfileOutline, printOutline } from './outline.js';
import { SUBREQUESTS, isSubrequestId, subrequestResult } from './results.js';
import { dockerfileTargets, printTargets } from './targets.js';

export { SUBREQUESTS } from './results.js';

export interface SubrequestInput {
  text: string;
  filename: string;
  target?: string;
  buildArgs: Record<string, string>;
  targetPlatform?: Platform;
  /** Converts the Dockerfile (nothing solved): what lint reads its warnings from. */
  convert: () => Promise<ConvertResult>;
}

export async function answerSubrequest(id: string, input: SubrequestInput): Promise<BuildResult> {
  if (!isSubrequestId(id)) {
    throw new BktError('INVALID_ARGUMENT', `requestid: unknown subrequest "${id}" (known: ${Object.values(SUBREQUESTS).join(', ')})`, { attribute: 'requestid' });
  }
  if (id === SUBREQUESTS.lint) {
    const { warnings } = await input.convert();
    const results = lintResults(warnings, input.filename, input.text);
    return subrequestResult(results, printLintResults(results), { 'result.statuscode': results.warnings.length > 0 ? '1' : '0' });
  }
  if (input.text.trim() === '') throw new BktError('INVALID_ARGUMENT', `${input.filename}: the Dockerfile cannot be empty`, { file: input.filename });
  const df = parseDockerfile(input.text, { filename: input.filename, skipChecks: true });
  if (id === SUBREQUESTS.targets) {
    const list = dockerfileTargets(df, input.text);
    return subrequestResult(list, printTargets(list));
  }
  const scope = globalArgs(df, {
    buildArgs: input.buildArgs,
    ...(input.targetPlatform ? { targetPlatform: input.targetPlatform } : {}),
    buildPlatform: hostPlatform(),
    ...(input.target ? { target: input.target } : {}),
  });
  const graph = resolveStages(df, { globalArgs: envFromMap(scope), ...(input.target ? { target: input.target } : {}) });
  const outline = dockerfileOutline(df, graph, input.text, { globalArgs: scope, buildArgs: input.buildArgs });
  return subrequestResult(outline, printOutline(outline));
}
