import type { Pacer } from '@bkt/core';
import { type RawDockerfile, RawParseError, parseRawSteps } from './ast.js';
import { type Steps, runSteps, runStepsPaced } from './steps.js';
import { type CheckConfig, type Directive, parseCheckConfig } from './directives.js';
import { LocalParseError, type SourceRange, locatedError } from './errors.js';
import { type ArgInstruction, type FromInstruction, type Instruction, parseInstruction } from './instructions.js';
import { type LintWarning, Linter } from './rules.js';
import { ShellLex, emptyEnv } from './shell.js';
import { runChecks, type CheckOptions } from './checks.js';

/**
 * `parseDockerfile(text)`: the whole front part of the Dockerfile frontend —
 * directives, raw parse, typed instructions grouped into stages, and the
 * build checks. Nothing is expanded here except what the checks need.
 */

export interface Stage {
  /** Position among the stages (what `COPY --from=0` refers to). */
  index: number;
  /** Lower-cased `AS` name. */
  name?: string;
  /** The base image, stage name or `scratch`, as written (may use global ARGs). */
  baseName: string;
  /** `--platform` as written. */
  platform?: string;
  from: FromInstruction;
  /** The instructions after FROM, in order. */
  instructions: Instruction[];
  /** Lines of the FROM instruction. */
  range: SourceRange;
}

export interface Dockerfile {
  filename: string;
  /** Parser directives at the top (`syntax`, `escape`, `check`). */
  directives: Directive[];
  /** The value of `# syntax=` (the frontend image a BuildKit user would get), if any. */
  syntax?: string;
  escapeToken: string;
  /** The effective check configuration (directive or override). */
  check: CheckConfig;
  /** ARG instructions before the first FROM (global scope, usable in FROM). */
  metaArgs: ArgInstruction[];
  stages: Stage[];
  /** Build-check warnings, already filtered by `check`. */
  warnings: LintWarning[];
  /** The physical lines (for error snippets); `lines[0]` is line 1. */
  lines: string[];
}

export interface ParseOptions extends CheckOptions {
  /** Shown in errors; default `Dockerfile`. */
  filename?: string;
  /** Replaces the `# check=` directive (BuildKit's BUILDKIT_DOCKERFILE_CHECK build arg). */
  check?: string;
  /** Skip the build checks entirely. */
  skipChecks?: boolean;
}

/**
 * Parses a Dockerfile. Throws DockerfileParseError (`FILE:LINE:COL: problem`)
 * for anything BuildKit refuses at parse time, and for lint violations when
 * the check configuration has `error=true`.
 */
export function parseDockerfile(text: string, options: ParseOptions = {}): Dockerfile {
  return runSteps(parseDockerfileSteps(text, options));
}

/** `parseDockerfile` that pauses with `pacer` between instructions (and throws its signal's reason once aborted). */
export function parseDockerfilePaced(text: string, options: ParseOptions, pacer: Pacer): Promise<Dockerfile> {
  return runStepsPaced(parseDockerfileSteps(text, options), pacer);
}

function* parseDockerfileSteps(text: string, options: ParseOptions): Steps<Dockerfile> {
  const filename = options.filename ?? 'Dockerfile';
  const raw = yield* parseRawOrThrow(text, filename);
  const fail = (problem: string, range: SourceRange, token?: string): never => {
    throw locatedError(problem, filename, raw.lines, range, token);
  };

  const checkValue = options.check ?? raw.directives.find((d) => d.name === 'check')?.value.split(' ')[0] ?? '';
  let check: CheckConfig;
  try {
    check = parseCheckConfig(checkValue);
  } catch (err) {
    const line = raw.directives.find((d) => d.name === 'check')?.line ?? 1;
    return fail(`failed to parse check options: ${(err as Error).message}`, { startLine: line, endLine: line });
  }

  const metaArgs: ArgInstruction[] = [];
  const stages: Stage[] = [];
  const instructions = yield* toInstructionSteps(raw, filename);
  for (const instr of instructions) {
    if (stages.length === 0 && instr.kind === 'ARG') {
      metaArgs.push(instr);
      continue;
    }
    if (instr.kind === 'FROM') {
      stages.push({
        index: stages.length,
        ...(instr.stageName ? { name: instr.stageName } : {}),
        baseName: instr.baseName,
        ...(instr.platform !== undefined ? { platform: instr.platform } : {}),
        from: instr,
        instructions: [],
        range: instr.range,
      });
      continue;
    }
    if (stages.length === 0) fail('no build stage in current context', instr.range, instr.keyword);
    stages[stages.length - 1].instructions.push(instr);
  }
  if (stages.length === 0) fail('dockerfile contains no stages to build', metaArgs[0]?.range ?? { startLine: 1, endLine: 1 });

  // `COPY --from` names a stage or image as written; variables are refused (as BuildKit).
  const plain = new ShellLex(raw.escapeToken);
  for (const stage of stages) {
    yield;
    for (const instr of stage.instructions) {
      if (instr.kind !== 'COPY' || instr.from === undefined) continue;
      let same = false;
      try {
        same = plain.processWord(instr.from, emptyEnv).result === instr.from;
      } catch {
        same = false;
      }
      if (!same) {
        fail('variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround', instr.range, '--from');
      }
    }
  }

  const syntax = raw.directives.find((d) => d.name === 'syntax')?.value;
  const df: Dockerfile = {
    filename,
    directives: raw.directives,
    ...(syntax !== undefined ? { syntax } : {}),
    escapeToken: raw.escapeToken,
    check,
    metaArgs,
    stages,
    warnings: [],
    lines: raw.lines,
  };

  if (!options.skipChecks) {
    const linter = new Linter(check);
    yield* runChecks(df, raw, linter, options);
    df.warnings = linter.warnings.sort((a, b) => a.range.startLine - b.range.startLine);
    if (check.error && df.warnings.length > 0) {
      const rules = [...new Set(df.warnings.map((w) => w.rule))].sort();
      fail(`lint violation found for rules: ${rules.join(', ')}`, df.warnings[0].range);
    }
  }
  return df;
}

/**
 * Parses instructions without stage rules: for ONBUILD triggers (each one a
 * line of the base image's OnBuild list) and tools. Directives are honoured.
 */
export function parseInstructions(text: string, options: { filename?: string } = {}): Instruction[] {
  const filename = options.filename ?? 'Dockerfile';
  return runSteps(toInstructionSteps(runSteps(parseRawOrThrow(text, filename)), filename));
}

function* parseRawOrThrow(text: string, filename: string): Steps<RawDockerfile> {
  try {
    return yield* parseRawSteps(text);
  } catch (err) {
    if (err instanceof RawParseError) {
      const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
      throw locatedError(err.message, filename, lines, { startLine: err.startLine, endLine: err.endLine }, err.token);
    }
    throw err;
  }
}

function* toInstructionSteps(raw: RawDockerfile, filename: string): Steps<Instruction[]> {
  const out: Instruction[] = [];
  for (const node of raw.nodes) {
    yield;
    try {
      out.push(parseInstruction(node));
    } catch (err) {
      if (err instanceof LocalParseError) {
        throw locatedError(err.message, filename, raw.lines, { startLine: node.startLine, endLine: node.endLine }, err.token);
      }
      throw err;
    }
  }
  return out;
}
