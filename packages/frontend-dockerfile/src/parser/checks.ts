import type { Steps } from './steps.js';
import type { Platform } from '@bkt/core';
import { EnvList } from '@bkt/llb';
import { hostPlatform, parseReference } from '@bkt/oci';
import type { RawDockerfile } from './ast.js';
import type { Dockerfile, Stage } from './dockerfile.js';
import { locatedError } from './errors.js';
import { expandInstruction } from './expand.js';
import type { ArgInstruction, Instruction } from './instructions.js';
import { platformOrUndefined, predefinedPlatformArgs } from './platforms.js';
import { Linter, RULES } from './rules.js';
import { type EnvGetter, ShellLex, envFromMap } from './shell.js';
import { suggest } from './suggest.js';

/**
 * The build checks that BuildKit runs while parsing and converting a
 * Dockerfile, run here over the parsed Dockerfile. Those that need the
 * environment (UndefinedVar, WorkdirRelativePath, …) follow it through each
 * stage: ARG and ENV, the parent stage's final state, and the base image's
 * environment when `imageEnv` can tell it.
 */

export interface CheckOptions {
  /** `--build-arg` values. */
  buildArgs?: Record<string, string>;
  buildPlatform?: Platform;
  targetPlatform?: Platform;
  /** The `--target` stage name (sets TARGETSTAGE). */
  target?: string;
  /**
   * The environment (`KEY=VALUE`) of an external base image, after ARG
   * expansion of its name; undefined when unknown, in which case UndefinedVar
   * is not reported in stages built on it (any variable might come from it).
   */
  imageEnv?: (ref: string) => readonly string[] | undefined;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const RESERVED_STAGE_NAMES = new Set(['context', 'scratch']);
const NON_ENV_ARGS = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);
const SECRET_TOKENS = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const SECRET_ALLOW = /(?:_|^)(?:public|file|version)(?:_|$)/i;

/** The environment at the end of a stage, inherited by stages built on it. */
interface StageState {
  /** Persistent: a stage built on another starts from its list without copying it. */
  env: EnvList;
  /** False when the base image's environment is unknown. */
  envKnown: boolean;
  declaredArgs: Set<string>;
  shellSet: boolean;
  workdirSet: boolean;
}

/** The build checks, as steps (one per stage and instruction). */
export function* runChecks(df: Dockerfile, raw: RawDockerfile, lint: Linter, options: CheckOptions): Steps<void> {
  const lex = new ShellLex(df.escapeToken);

  for (const w of raw.emptyContinuations) {
    lint.report(RULES.NoEmptyContinuation, { startLine: w.line, endLine: w.line }, 'Empty continuation line');
  }

  for (const stage of df.stages) {
    yield;
    const from = stage.from;
    const l = lint.forComments(from.comments);
    if (from.stageNameAsWritten !== undefined && from.stageNameAsWritten !== from.stageNameAsWritten.toLowerCase()) {
      l.report(RULES.StageNameCasing, from.range, `Stage name '${from.stageNameAsWritten}' should be lowercase`);
    }
    if (from.asKeyword !== undefined && !fromMatchesAsCasing(from.keyword, from.asKeyword)) {
      l.report(RULES.FromAsCasing, from.range, `'${from.asKeyword}' and '${from.keyword}' keywords' casing do not match`);
    }
    for (const instr of stage.instructions) {
      if (instr.kind === 'MAINTAINER') {
        lint.forComments(instr.comments).report(RULES.MaintainerDeprecated, instr.range, 'Maintainer instruction is deprecated in favor of using label');
      }
    }
  }

  checkStageNames(df.stages, lint);
  checkCommandCasing(df.stages, lint);

  const predefined = predefinedArgs(df, options);

  // Base names must stay valid with the ARG defaults alone.
  const defaults = metaArgValues(predefined, df.metaArgs, {}, lex);
  if (defaults) {
    for (const stage of df.stages) {
      try {
        const name = lex.processWord(stage.baseName, envFromMap(defaults)).result;
        if (!isValidImageReference(name)) {
          lint.forComments(stage.from.comments).report(RULES.InvalidDefaultArgInFrom, stage.range, `Default value for ARG ${stage.baseName} results in empty or invalid base image name`);
        }
      } catch {
        break;
      }
    }
  }

  const globalArgs = metaArgValues(predefined, df.metaArgs, options.buildArgs ?? {}, lex) ?? predefined;
  const globalEnv = envFromMap(globalArgs);
  const declaredGlobal = new Set([...df.metaArgs.flatMap((a) => a.args.map((d) => d.key)), ...globalArgs.keys()]);
  const states: StageState[] = [];
  /** The first stage of each name: a stage's parent is the first earlier stage named as its base. */
  const firstNamed = new Map<string, number>();

  for (const stage of df.stages) {
    yield;
    const l = lint.forComments(stage.from.comments);
    let baseName = stage.baseName;
    try {
      const r = lex.processWord(stage.baseName, globalEnv);
      baseName = r.result;
      reportUndefinedFromArgs(r.unmatched, declaredGlobal, stage, l);
    } catch {
      // A bad substitution is a build error, reported by the converter.
    }
    if (stage.platform !== undefined) checkPlatformFlag(stage, lex, globalEnv, declaredGlobal, l);

    const parentIndex = firstNamed.get(baseName.toLowerCase());
    const state = initialState(parentIndex !== undefined ? states[parentIndex] : undefined, baseName, options);
    yield* checkStage(stage, state, globalArgs, options, lex.escapeToken, l);
    states.push(state);
    if (stage.name !== undefined && !firstNamed.has(stage.name)) firstNamed.set(stage.name, stage.index);
  }
}

/** Whether `name` parses as an image reference (`alpine`, `docker.io/library/alpine:3`, `x@sha256:…`). */
function isValidImageReference(name: string): boolean {
  try {
    parseReference(name);
    return true;
  } catch {
    return false;
  }
}

/** BUILDPLATFORM, TARGETOS, … for these options (build args override them). */
function predefinedArgs(df: Dockerfile, options: CheckOptions): Map<string, string> {
  const build = options.buildPlatform ?? hostPlatform();
  const target = options.targetPlatform ?? build;
  const targetStage = options.target ?? df.stages[df.stages.length - 1].name ?? '';
  const predefined = new Map(Object.entries(predefinedPlatformArgs(build, target, targetStage)));
  for (const [k, v] of Object.entries(options.buildArgs ?? {})) if (predefined.has(k)) predefined.set(k, v);
  return predefined;
}

/**
 * The global ARG scope FROM lines see: the predefined platform ARGs, then the
 * ARGs before the first FROM in order (a build arg replaces a default).
 * Throws DockerfileParseError on a bad substitution in a default.
 */
export function globalArgs(df: Dockerfile, options: CheckOptions = {}): Map<string, string> {
  const lex = new ShellLex(df.escapeToken);
  const args = new Map(predefinedArgs(df, options));
  const buildArgs = options.buildArgs ?? {};
  for (const instr of df.metaArgs) {
    for (const def of instr.args) {
      let value: string | undefined;
      if (Object.hasOwn(buildArgs, def.key)) value = buildArgs[def.key];
      else if (def.value !== undefined) {
        try {
          value = lex.processWord(def.value, envFromMap(args)).result;
        } catch (err) {
          throw locatedError((err as Error).message, df.filename, df.lines, instr.range);
        }
      }
      if (value !== undefined) args.set(def.key, value);
    }
  }
  return args;
}

function fromMatchesAsCasing(from: string, as: string): boolean {
  const lower = from === from.toLowerCase();
  const upper = from === from.toUpperCase();
  if (!lower && !upper) return true;
  return lower ? as === as.toLowerCase() : as === as.toUpperCase();
}

function checkStageNames(stages: Stage[], lint: Linter): void {
  const seen = new Set<string>();
  for (const stage of stages) {
    if (stage.name === undefined) continue;
    const l = lint.forComments(stage.from.comments);
    if (RESERVED_STAGE_NAMES.has(stage.name)) l.report(RULES.ReservedStageName, stage.range, `Stage name should not use the same name as reserved stage "${stage.name}"`);
    if (seen.has(stage.name)) l.report(RULES.DuplicateStageName, stage.range, `Duplicate stage name "${stage.name}", stage names should be unique`);
    seen.add(stage.name);
  }
}

function checkCommandCasing(stages: Stage[], lint: Linter): void {
  const all: Instruction[] = stages.flatMap((s) => [s.from, ...s.instructions]);
  const consistent = (s: string): boolean => s === s.toLowerCase() || s === s.toUpperCase();
  let lower = 0;
  let upper = 0;
  for (const i of all) {
    if (!consistent(i.keyword)) continue;
    if (i.keyword === i.keyword.toLowerCase()) lower++;
    else upper++;
  }
  const majorityLower = lower > upper;
  for (const i of all) {
    let want = '';
    if (majorityLower && i.keyword.toLowerCase() !== i.keyword) want = 'lowercase';
    else if (!majorityLower && i.keyword.toUpperCase() !== i.keyword) want = 'uppercase';
    if (want) {
      lint.forComments(i.comments).report(RULES.ConsistentInstructionCasing, i.range, `Command '${i.keyword}' should match the case of the command majority (${want})`);
    }
  }
}

/** The global ARG values: predefined ones, then meta ARGs in order (build args win). Undefined on a bad substitution. */
function metaArgValues(predefined: Map<string, string>, metaArgs: ArgInstruction[], buildArgs: Record<string, string>, lex: ShellLex): Map<string, string> | undefined {
  const args = new Map(predefined);
  for (const instr of metaArgs) {
    for (const def of instr.args) {
      let value: string | undefined;
      if (Object.hasOwn(buildArgs, def.key)) value = buildArgs[def.key];
      else if (def.value !== undefined) {
        try {
          value = lex.processWord(def.value, envFromMap(args)).result;
        } catch {
          return undefined;
        }
      }
      if (value !== undefined) args.set(def.key, value);
    }
  }
  return args;
}

function reportUndefinedFromArgs(unmatched: Set<string>, declared: Set<string>, stage: Stage, lint: Linter): void {
  for (const arg of unmatched) {
    if (declared.has(arg)) continue;
    const hint = suggest(arg, [...declared], true);
    lint.report(RULES.UndefinedArgInFrom, stage.range, `FROM argument '${arg}' is not declared${hint ? ` (did you mean ${hint}?)` : ''}`);
  }
}

function checkPlatformFlag(stage: Stage, lex: ShellLex, env: EnvGetter, declared: Set<string>, lint: Linter): void {
  const platform = stage.platform as string;
  let r;
  try {
    r = lex.processWord(platform, env);
  } catch {
    return;
  }
  reportUndefinedFromArgs(r.unmatched, declared, stage, lint);
  if (r.matched.size === 1 && r.unmatched.size === 0 && r.matched.has('TARGETPLATFORM') && r.result === env.get('TARGETPLATFORM')) {
    lint.report(RULES.RedundantTargetPlatform, stage.range, `Setting platform to predefined ${platform} in FROM is redundant as this is the default behavior`);
  }
  if (r.matched.size === 0 && r.unmatched.size === 0) {
    const p = platformOrUndefined(r.result);
    if (p && !(stage.name ?? '').includes(p.os) && !(stage.name ?? '').includes(p.architecture)) {
      lint.report(RULES.FromPlatformFlagConstDisallowed, stage.range, `FROM --platform flag should not use constant value "${r.result}"`);
    }
  }
}

function initialState(parent: StageState | undefined, baseName: string, options: CheckOptions): StageState {
  if (parent) {
    return { env: parent.env, envKnown: parent.envKnown, declaredArgs: new Set(parent.declaredArgs), shellSet: parent.shellSet, workdirSet: parent.workdirSet };
  }
  const entries = new Map<string, string>();
  let envKnown = true;
  if (baseName.toLowerCase() !== 'scratch') {
    const imageEnv = options.imageEnv?.(baseName);
    if (imageEnv === undefined) envKnown = false;
    for (const entry of imageEnv ?? []) {
      const eq = entry.indexOf('=');
      entries.set(eq < 0 ? entry : entry.slice(0, eq), eq < 0 ? '' : entry.slice(eq + 1));
    }
  }
  if (!entries.has('PATH')) entries.set('PATH', DEFAULT_PATH);
  const env = EnvList.fromEntries(entries);
  return { env, envKnown, declaredArgs: new Set(), shellSet: false, workdirSet: false };
}

function* checkStage(stage: Stage, state: StageState, globalArgs: Map<string, string>, options: CheckOptions, escapeToken: string, stageLint: Linter): Steps<void> {
  const envGetter: EnvGetter = { get: (k) => state.env.get(k), keys: () => state.env.entries().map(([k]) => k) };
  const lex = new ShellLex(escapeToken);
  const used: Partial<Record<'CMD' | 'ENTRYPOINT' | 'HEALTHCHECK', Instruction>> = {};
  const buildArgs = options.buildArgs ?? {};

  const reportUnmatched = (instr: Instruction, unmatched: Set<string>, lint: Linter): void => {
    if (!state.envKnown) return;
    for (const name of unmatched) {
      if (state.declaredArgs.has(name) || NON_ENV_ARGS.has(name)) continue;
      const hint = suggest(name, envGetter.keys(), true);
      lint.report(RULES.UndefinedVar, instr.range, `Usage of undefined variable '$${name}'${hint ? ` (did you mean $${hint}?)` : ''}`);
    }
  };

  for (const instr of stage.instructions) {
    yield;
    const lint = stageLint.forComments(instr.comments);

    if (instr.kind === 'ARG') {
      for (const def of instr.args) {
        checkSecretKey('ARG', def.key, instr, lint);
        const hasValue = Object.hasOwn(buildArgs, def.key);
        let value = def.value;
        if (value === undefined && !hasValue && globalArgs.has(def.key)) value = globalArgs.get(def.key);
        else if (hasValue) value = buildArgs[def.key];
        else if (value !== undefined) {
          try {
            const r = lex.processWord(value, envGetter);
            reportUnmatched(instr, r.unmatched, lint);
            value = r.result;
          } catch {
            value = undefined;
          }
        }
        if (value !== undefined && !NON_ENV_ARGS.has(def.key)) state.env = state.env.set(def.key, value);
        state.declaredArgs.add(def.key);
      }
      continue;
    }

    let expanded: Instruction = instr;
    try {
      const r = expandInstruction(instr, envGetter, { escapeToken });
      expanded = r.instruction;
      reportUnmatched(instr, r.unmatched, lint);
    } catch {
      // The converter reports substitution errors with the build.
    }

    switch (expanded.kind) {
      case 'ENV':
        for (const kv of expanded.env) {
          if (kv.legacy) lint.report(RULES.LegacyKeyValueFormat, instr.range, `"ENV key=value" should be used instead of legacy "ENV key value" format`);
          checkSecretKey('ENV', kv.key, instr, lint);
          state.env = state.env.set(kv.key, kv.value);
        }
        break;
      case 'LABEL':
        for (const kv of expanded.labels) {
          if (kv.legacy) lint.report(RULES.LegacyKeyValueFormat, instr.range, `"LABEL key=value" should be used instead of legacy "LABEL key value" format`);
        }
        break;
      case 'SHELL':
        state.shellSet = true;
        break;
      case 'CMD':
      case 'ENTRYPOINT':
        if (expanded.shellForm && !state.shellSet) {
          lint.report(RULES.JSONArgsRecommended, instr.range, `JSON arguments recommended for ${instr.keyword} to prevent unintended behavior related to OS signals`);
        }
        markUsedOnce(expanded.kind, instr, used, lint);
        break;
      case 'HEALTHCHECK':
        markUsedOnce('HEALTHCHECK', instr, used, lint);
        break;
      case 'WORKDIR':
        if (!state.workdirSet && !expanded.path.startsWith('/')) {
          lint.report(RULES.WorkdirRelativePath, instr.range, `Relative workdir ${JSON.stringify(expanded.path)} can have unexpected results if the base image changes`);
        }
        state.workdirSet = true;
        break;
      case 'EXPOSE':
        for (const port of expanded.ports) checkExposePort(port, instr, lint);
        break;
      default:
        break;
    }
  }
}

function markUsedOnce(kind: 'CMD' | 'ENTRYPOINT' | 'HEALTHCHECK', instr: Instruction, used: Partial<Record<string, Instruction>>, lint: Linter): void {
  const previous = used[kind];
  // The earlier one is reported: it is the one that gets ignored.
  if (previous) lint.report(RULES.MultipleInstructionsDisallowed, previous.range, `Multiple ${instr.keyword} instructions should not be used in the same stage because only the last one will be used`);
  used[kind] = instr;
}

function checkSecretKey(instruction: 'ARG' | 'ENV', key: string, instr: Instruction, lint: Linter): void {
  if (SECRET_TOKENS.test(key) && !SECRET_ALLOW.test(key)) {
    lint.report(RULES.SecretsUsedInArgOrEnv, instr.range, `Do not use ARG or ENV instructions for sensitive data (${instruction} ${JSON.stringify(key)})`);
  }
}

function checkExposePort(raw: string, instr: Instruction, lint: Linter): void {
  const slash = raw.lastIndexOf('/');
  const proto = slash >= 0 ? raw.slice(slash + 1) : '';
  const spec = slash >= 0 ? raw.slice(0, slash) : raw;
  if (proto !== proto.toLowerCase()) lint.report(RULES.ExposeProtoCasing, instr.range, `Defined protocol '${raw}' in EXPOSE instruction should be lowercase`);
  if (spec.includes(':')) lint.report(RULES.ExposeInvalidFormat, instr.range, `EXPOSE instruction should not define an IP address or host-port mapping, found '${raw}'`);
}
